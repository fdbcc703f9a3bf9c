/**
 * The configuration module: `functions.yaml` and the environment, validated and compiled
 * into frozen objects (see `types.ts`). Nothing downstream re-reads YAML or `process.env`.
 */

export { BUILT_IN_DEFAULTS } from "./compile.ts";
export { durationSchema, isDuration, parseDuration } from "./duration.ts";
export { ENVIRONMENT, loadEnv } from "./env.ts";
export type { ConfigIssue } from "./errors.ts";
export { ConfigError, formatIssue, formatPath } from "./errors.ts";
export { compileConfig, loadConfig } from "./load.ts";
export {
  configFileSchema,
  defaultsSchema,
  functionEntrySchema,
  PER_FUNCTION_KEYS,
  streamEntrySchema,
} from "./schema.ts";
export type { SubjectOptions } from "./subjects.ts";
export { isValidSubject, subjectCovers } from "./subjects.ts";
export type {
  CompiledBreaker,
  CompiledConfig,
  CompiledDeliverPolicy,
  CompiledEnv,
  CompiledFunction,
  CompiledRetry,
  CompiledStream,
  Encoding,
} from "./types.ts";
