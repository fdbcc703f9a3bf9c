import { pino, type Logger as PinoLogger } from "pino";
import type { CompiledEnv } from "../config/types.ts";

export type Logger = PinoLogger;

/**
 * The host's structured logger: JSON lines on stdout. Secrets never reach it: the env is
 * logged only through {@link redactedEnv}.
 */
export function createLogger(level: CompiledEnv["logLevel"], destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: "jetfn" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
