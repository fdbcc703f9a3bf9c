import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { durationMessage, isDuration, parseDuration } from "./duration.ts";
import type { ConfigIssue } from "./errors.ts";
import { ConfigError, describeValue } from "./errors.ts";
import { isFile } from "./files.ts";
import { isSize, parseSize } from "./size.ts";
import type { CompiledEnv } from "./types.ts";

/** Variables whose values must never appear in a message. */
const SECRETS: ReadonlySet<string> = new Set(["NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY_SEED", "JETFN_INGRESS_TOKENS"]);

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
const URL_SCHEMES = new Set(["nats:", "tls:", "ws:", "wss:"]);

/** The issue file name for environment problems: `environment NATS_URL: ...`. */
export const ENVIRONMENT = "environment";

/** `NATS_URL` may carry `user:password@`; its echo in a message keeps only `***@`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)?[^@/]*@/i, (_, scheme: string | undefined) => `${scheme ?? ""}***@`);
}

function isServerUrl(text: string): boolean {
  const candidate = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `nats://${text}`;
  try {
    const url = new URL(candidate);
    return URL_SCHEMES.has(url.protocol) && url.hostname !== "" && (url.pathname === "" || url.pathname === "/");
  } catch {
    return false;
  }
}

function checked<T>(valid: (value: string) => boolean, message: (value: string) => string, convert: (value: string) => T) {
  return z
    .string()
    .refine(valid, { error: (issue) => message(String(issue.input)) })
    .transform(convert);
}

/** An existing file, as an absolute path. */
const existingFile = (cwd: string) =>
  checked(
    (value) => isFile(path.resolve(cwd, value)),
    (value) => `file not found: ${path.resolve(cwd, value)}`,
    (value) => path.resolve(cwd, value),
  );

const anything = z.string();

const port = checked(
  (value) => /^\d{1,5}$/.test(value) && Number(value) <= 65_535,
  (value) => `expected a port 0-65535, got ${describeValue(value)}`,
  Number,
);

/**
 * `JETFN_INGRESS_TOKENS`: a comma list, or `@file` with tokens separated by commas or lines.
 * Undefined when the file cannot be read or holds no token.
 */
function readTokens(value: string, cwd: string): string[] | undefined {
  let text = value;
  if (value.startsWith("@")) {
    try {
      text = readFileSync(path.resolve(cwd, value.slice(1)), "utf8");
    } catch {
      return undefined;
    }
  }
  const tokens = text
    .split(/[,\r\n]+/)
    .map((token) => token.trim())
    .filter((token) => token !== "");
  return tokens.length > 0 ? tokens : undefined;
}

function envSchema(cwd: string) {
  return z.object({
    NATS_URL: checked(
      (value) => value.split(",").every((url) => isServerUrl(url.trim())),
      (value) => `expected a comma-separated list of server URLs like nats://host:4222, got ${describeValue(redactUrl(value))}`,
      (value) => value.split(",").map((url) => url.trim()),
    ).optional(),
    NATS_CREDS: existingFile(cwd).optional(),
    NATS_USER: anything.optional(),
    NATS_PASSWORD: anything.optional(),
    NATS_TOKEN: anything.optional(),
    NATS_NKEY_SEED: checked(
      (value) => /^SU[A-Z2-7]+$/.test(value),
      () => `expected a user nkey seed (starting with "SU")`,
      (value) => value,
    ).optional(),
    NATS_TLS_CA: existingFile(cwd).optional(),
    NATS_TLS_CERT: existingFile(cwd).optional(),
    NATS_TLS_KEY: existingFile(cwd).optional(),
    JETFN_CONFIG: anything.default("functions.yaml").transform((value) => path.resolve(cwd, value)),
    JETFN_HTTP_HOST: anything.default("0.0.0.0"),
    JETFN_HTTP_PORT: port.default(8080),
    JETFN_SHUTDOWN_TIMEOUT: checked(isDuration, durationMessage, parseDuration).default(30_000),
    JETFN_INGRESS_HOST: anything.default("0.0.0.0"),
    JETFN_INGRESS_PORT: port.default(8081),
    JETFN_INGRESS_TOKENS: checked(
      (value) => readTokens(value, cwd) !== undefined,
      (value) =>
        value.startsWith("@")
          ? `cannot read the token file ${path.resolve(cwd, value.slice(1))}`
          : "expected a comma-separated list of tokens, or @/path/to/file",
      (value) => readTokens(value, cwd)!,
    ).optional(),
    JETFN_INGRESS_MAX_BODY: checked(isSize, (value) => `expected a size like 1MB, got ${describeValue(value)}`, parseSize).default(
      1024 * 1024,
    ),
    JETFN_INGRESS_READ_TIMEOUT: checked(isDuration, durationMessage, parseDuration).default(10_000),
    JETFN_WARM_THREADS: checked(
      (value) => /^\d{1,4}$/.test(value),
      (value) => `expected a whole number of threads like 4 (0: none), got ${describeValue(value)}`,
      Number,
    ).default(4),
    // For testing a fleet whose clocks disagree: this host's schedules see the time shifted.
    JETFN_TEST_CLOCK_OFFSET: checked(
      (value) => isDuration(value.replace(/^-/, "")),
      (value) => `expected a duration like 5s or -5s, got ${describeValue(value)}`,
      (value) => (value.startsWith("-") ? -1 : 1) * parseDuration(value.replace(/^-/, "")),
    ).default(0),
    OTEL_SERVICE_NAME: anything.default("jetfn"),
    OTEL_EXPORTER_OTLP_ENDPOINT: checked(
      isHttpUrl,
      (value) => `expected an http(s) URL like http://collector:4318, got ${describeValue(value)}`,
      (value) => value,
    ).optional(),
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: checked(
      isHttpUrl,
      (value) => `expected an http(s) URL like http://collector:4318/v1/traces, got ${describeValue(value)}`,
      (value) => value,
    ).optional(),
    OTEL_TRACES_SAMPLER: checked(
      (value) => (SAMPLERS as readonly string[]).includes(value),
      (value) => `expected one of ${SAMPLERS.join(", ")}, got ${describeValue(value)}`,
      (value) => value as (typeof SAMPLERS)[number],
    ).default("parentbased_always_on"),
    OTEL_TRACES_SAMPLER_ARG: checked(
      (value) => value !== "" && Number.isFinite(Number(value)) && Number(value) >= 0 && Number(value) <= 1,
      (value) => `expected a ratio between 0 and 1, got ${describeValue(value)}`,
      Number,
    ).default(1),
    OTEL_RESOURCE_ATTRIBUTES: checked(
      (value) => value.split(",").every((pair) => /^[^=\s]+=[^,]*$/.test(pair.trim())),
      (value) => `expected key=value pairs separated by commas, got ${describeValue(value)}`,
      (value) =>
        Object.fromEntries(
          value.split(",").map((pair) =>
            pair
              .trim()
              .split(/=(.*)/s)
              .slice(0, 2)
              .map((part) => decodeURIComponent(part.trim())),
          ),
        ),
    ).optional(),
    LOG_LEVEL: checked(
      (value) => (LOG_LEVELS as readonly string[]).includes(value.toLowerCase()),
      (value) => `expected one of ${LOG_LEVELS.join(", ")}, got ${describeValue(value)}`,
      (value) => value.toLowerCase() as (typeof LOG_LEVELS)[number],
    ).default("info"),
  });
}

const SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;

function isHttpUrl(value: string): boolean {
  try {
    return ["http:", "https:"].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

/** The OTLP/HTTP traces URL: the traces endpoint as given, or `/v1/traces` under the base one. */
function tracesUrl(base: string | undefined, traces: string | undefined): string | undefined {
  if (traces) return traces;
  if (!base) return undefined;
  return `${base.replace(/\/+$/, "")}/v1/traces`;
}

/** Pairs that only make sense together: `[a, b]` means each requires the other. */
const TOGETHER: ReadonlyArray<readonly [string, string]> = [
  ["NATS_USER", "NATS_PASSWORD"],
  ["NATS_TLS_CERT", "NATS_TLS_KEY"],
];

/**
 * Validates the environment (DESIGN.md, "Environment") into a frozen `CompiledEnv`. Empty
 * values count as unset; non-secret values are trimmed; paths become absolute (relative to
 * `cwd`) and must name existing files. Secret values never appear in error messages.
 * @throws ConfigError naming each bad variable (`environment JETFN_HTTP_PORT: ...`).
 */
export function loadEnv(env: Readonly<Record<string, string | undefined>> = process.env, cwd: string = process.cwd()): CompiledEnv {
  const schema = envSchema(cwd);
  const input: Record<string, string> = {};
  for (const name of Object.keys(schema.shape)) {
    const raw = env[name];
    const value = raw === undefined || SECRETS.has(name) ? raw : raw.trim();
    if (value !== undefined && value !== "") input[name] = value;
  }

  const issues: ConfigIssue[] = [];
  for (const [a, b] of TOGETHER) {
    if ((input[a] === undefined) !== (input[b] === undefined)) {
      const [set, missing] = input[a] === undefined ? [b, a] : [a, b];
      issues.push({ file: ENVIRONMENT, path: missing, message: `must be set when ${set} is set` });
    }
  }
  const result = schema.safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const name = String(issue.path[0] ?? "");
      // Belt and braces: only our own messages, which never echo a secret, are kept for secrets.
      const message = SECRETS.has(name) && issue.code !== "custom" ? "invalid value" : issue.message;
      issues.push({ file: ENVIRONMENT, path: name, message });
    }
  }
  if (issues.length > 0 || !result.success) throw new ConfigError(issues);

  const data = result.data;
  const compiled: CompiledEnv = {
    ...(data.NATS_URL ? { natsUrl: data.NATS_URL } : {}),
    ...(data.NATS_CREDS !== undefined ? { natsCreds: data.NATS_CREDS } : {}),
    ...(data.NATS_USER !== undefined ? { natsUser: data.NATS_USER } : {}),
    ...(data.NATS_PASSWORD !== undefined ? { natsPassword: data.NATS_PASSWORD } : {}),
    ...(data.NATS_TOKEN !== undefined ? { natsToken: data.NATS_TOKEN } : {}),
    ...(data.NATS_NKEY_SEED !== undefined ? { natsNkeySeed: data.NATS_NKEY_SEED } : {}),
    ...(data.NATS_TLS_CA !== undefined ? { natsTlsCa: data.NATS_TLS_CA } : {}),
    ...(data.NATS_TLS_CERT !== undefined ? { natsTlsCert: data.NATS_TLS_CERT } : {}),
    ...(data.NATS_TLS_KEY !== undefined ? { natsTlsKey: data.NATS_TLS_KEY } : {}),
    configFile: data.JETFN_CONFIG,
    httpHost: data.JETFN_HTTP_HOST,
    httpPort: data.JETFN_HTTP_PORT,
    shutdownTimeoutMs: data.JETFN_SHUTDOWN_TIMEOUT,
    ingressHost: data.JETFN_INGRESS_HOST,
    ingressPort: data.JETFN_INGRESS_PORT,
    ingressTokens: Object.freeze(data.JETFN_INGRESS_TOKENS ?? []),
    ingressMaxBodyBytes: data.JETFN_INGRESS_MAX_BODY,
    ingressReadTimeoutMs: data.JETFN_INGRESS_READ_TIMEOUT,
    clockOffsetMs: data.JETFN_TEST_CLOCK_OFFSET,
    warmThreads: data.JETFN_WARM_THREADS,
    logLevel: data.LOG_LEVEL,
  };
  const tracesEndpoint = tracesUrl(data.OTEL_EXPORTER_OTLP_ENDPOINT, data.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  if (tracesEndpoint) {
    Object.assign(compiled, {
      tracing: Object.freeze({
        endpoint: tracesEndpoint,
        serviceName: data.OTEL_SERVICE_NAME,
        sampler: data.OTEL_TRACES_SAMPLER,
        samplerRatio: data.OTEL_TRACES_SAMPLER_ARG,
        resourceAttributes: Object.freeze({ ...(data.OTEL_RESOURCE_ATTRIBUTES ?? {}) }),
      }),
    });
  }
  if (compiled.natsUrl) Object.freeze(compiled.natsUrl);
  return Object.freeze(compiled);
}
