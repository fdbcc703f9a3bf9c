import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadEnv } from "../../runtime/config/index.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "jetfn-env-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string): string => {
  const full = path.join(dir, name);
  writeFileSync(full, "x");
  return full;
};

function errorOf(env: Record<string, string | undefined>): ConfigError {
  try {
    loadEnv(env, dir);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("loadEnv", () => {
  it("applies defaults and treats empty values as unset", () => {
    const env = loadEnv({ NATS_URL: "", JETFN_HTTP_PORT: "", LOG_LEVEL: "", UNRELATED: "x" }, dir);
    expect(env).toEqual({
      configFile: path.join(dir, "functions.yaml"),
      httpHost: "0.0.0.0",
      httpPort: 8080,
      shutdownTimeoutMs: 30_000,
      ingressHost: "0.0.0.0",
      ingressPort: 8081,
      ingressTokens: [],
      ingressMaxBodyBytes: 1024 * 1024,
      ingressReadTimeoutMs: 10_000,
      clockOffsetMs: 0,
      warmThreads: 4,
      logLevel: "info",
    });
    expect(env.natsUrl).toBeUndefined();
    expect(Object.isFrozen(env)).toBe(true);
  });

  it("reads every setting, with paths made absolute", () => {
    file("ca.pem");
    const env = loadEnv(
      {
        NATS_URL: "nats://a:4222, tls://b:4443,c:4222,localhost",
        NATS_CREDS: file("user.creds"),
        NATS_USER: "alice",
        NATS_PASSWORD: " s3cret ",
        NATS_TOKEN: "tok",
        NATS_NKEY_SEED: "SUAGMJH5XLGZKQQWAWKRZJIGMOU4HPFUYLXJMXOO5NLFEO2OOQJ5LPRDPM",
        NATS_TLS_CA: "ca.pem",
        NATS_TLS_CERT: file("cert.pem"),
        NATS_TLS_KEY: file("key.pem"),
        JETFN_CONFIG: "conf/fns.yaml",
        JETFN_HTTP_HOST: "127.0.0.1",
        JETFN_HTTP_PORT: "0",
        JETFN_SHUTDOWN_TIMEOUT: "1.5s",
        JETFN_INGRESS_HOST: "127.0.0.2",
        JETFN_INGRESS_PORT: "9000",
        JETFN_INGRESS_TOKENS: "t1, t2",
        JETFN_INGRESS_MAX_BODY: "64KB",
        JETFN_INGRESS_READ_TIMEOUT: "2s",
        JETFN_TEST_CLOCK_OFFSET: "-5s",
        JETFN_WARM_THREADS: "0",
        LOG_LEVEL: "DEBUG",
      },
      dir,
    );
    expect(env).toEqual({
      natsUrl: ["nats://a:4222", "tls://b:4443", "c:4222", "localhost"],
      natsCreds: path.join(dir, "user.creds"),
      natsUser: "alice",
      natsPassword: " s3cret ",
      natsToken: "tok",
      natsNkeySeed: "SUAGMJH5XLGZKQQWAWKRZJIGMOU4HPFUYLXJMXOO5NLFEO2OOQJ5LPRDPM",
      natsTlsCa: path.join(dir, "ca.pem"),
      natsTlsCert: path.join(dir, "cert.pem"),
      natsTlsKey: path.join(dir, "key.pem"),
      configFile: path.join(dir, "conf/fns.yaml"),
      httpHost: "127.0.0.1",
      httpPort: 0,
      shutdownTimeoutMs: 1500,
      ingressHost: "127.0.0.2",
      ingressPort: 9000,
      ingressTokens: ["t1", "t2"],
      ingressMaxBodyBytes: 64 * 1024,
      ingressReadTimeoutMs: 2000,
      clockOffsetMs: -5000,
      warmThreads: 0,
      logLevel: "debug",
    });
    expect(Object.isFrozen(env.natsUrl)).toBe(true);
  });

  it.each([
    ["JETFN_HTTP_PORT", "abc", 'environment JETFN_HTTP_PORT: expected a port 0-65535, got "abc"'],
    ["JETFN_HTTP_PORT", "65536", 'environment JETFN_HTTP_PORT: expected a port 0-65535, got "65536"'],
    ["JETFN_SHUTDOWN_TIMEOUT", "30", 'environment JETFN_SHUTDOWN_TIMEOUT: expected a duration like 10s, got "30"'],
    ["JETFN_WARM_THREADS", "all", 'environment JETFN_WARM_THREADS: expected a whole number of threads like 4 (0: none), got "all"'],
    ["LOG_LEVEL", "loud", 'environment LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, silent, got "loud"'],
    [
      "NATS_URL",
      "http://x:80",
      'environment NATS_URL: expected a comma-separated list of server URLs like nats://host:4222, got "http://x:80"',
    ],
    ["NATS_CREDS", "missing.creds", `environment NATS_CREDS: file not found: ${path.join(dir, "missing.creds")}`],
  ])("rejects %s=%s", (name, value, message) => {
    expect(errorOf({ [name]: value }).message).toBe(message);
  });

  it("reads ingress tokens from a file named with @, one per line or comma, and never echoes them", () => {
    const tokens = path.join(dir, "tokens.txt");
    writeFileSync(tokens, "alpha\nbeta, gamma\n\n");
    expect(loadEnv({ JETFN_INGRESS_TOKENS: `@${tokens}` }, dir).ingressTokens).toEqual(["alpha", "beta", "gamma"]);
    expect(errorOf({ JETFN_INGRESS_TOKENS: "@missing.txt" }).message).toBe(
      `environment JETFN_INGRESS_TOKENS: cannot read the token file ${path.join(dir, "missing.txt")}`,
    );
    const error = errorOf({ JETFN_INGRESS_TOKENS: " , ", JETFN_INGRESS_MAX_BODY: "lots" });
    expect(error.message).toContain("environment JETFN_INGRESS_TOKENS: expected a comma-separated list of tokens, or @/path/to/file");
    expect(error.message).toContain('environment JETFN_INGRESS_MAX_BODY: expected a size like 1MB, got "lots"');
  });

  it("requires NATS_USER and NATS_PASSWORD together, and TLS cert with key", () => {
    expect(errorOf({ NATS_USER: "alice" }).message).toBe("environment NATS_PASSWORD: must be set when NATS_USER is set");
    expect(errorOf({ NATS_PASSWORD: "pw" }).message).toBe("environment NATS_USER: must be set when NATS_PASSWORD is set");
    expect(errorOf({ NATS_TLS_CERT: file("c.pem") }).message).toBe("environment NATS_TLS_KEY: must be set when NATS_TLS_CERT is set");
  });

  it("reports every bad variable at once", () => {
    const error = errorOf({ JETFN_HTTP_PORT: "-1", LOG_LEVEL: "x" });
    expect(error.issues.map((issue) => issue.path)).toEqual(["JETFN_HTTP_PORT", "LOG_LEVEL"]);
    expect(error.issues.every((issue) => issue.file === "environment")).toBe(true);
  });

  it("never echoes secret values", () => {
    const seed = "SXnot-a-seed-but-secret-4711";
    const error = errorOf({ NATS_NKEY_SEED: seed, NATS_PASSWORD: "hunter2-secret", NATS_URL: "nats://bob:pa55@host:4222/x" });
    expect(error.message).toContain('environment NATS_NKEY_SEED: expected a user nkey seed (starting with "SU")');
    expect(error.message).toContain("environment NATS_URL:");
    expect(error.message).toContain("***@host");
    for (const secret of [seed, "hunter2", "pa55"]) expect(error.message).not.toContain(secret);
  });
});

describe("loadEnv: OpenTelemetry", () => {
  it("exports nothing without an endpoint", () => {
    expect(loadEnv({ OTEL_SERVICE_NAME: "svc", OTEL_TRACES_SAMPLER: "always_on" }, dir).tracing).toBeUndefined();
  });

  it("appends /v1/traces to the base endpoint, and takes the traces endpoint as is", () => {
    expect(loadEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }, dir).tracing).toEqual({
      endpoint: "http://collector:4318/v1/traces",
      serviceName: "jetfn",
      sampler: "parentbased_always_on",
      samplerRatio: 1,
      resourceAttributes: {},
    });
    const tracing = loadEnv(
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://ignored:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://collector/custom/traces",
        OTEL_SERVICE_NAME: "orders",
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.25",
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod, team=payments%20core",
      },
      dir,
    ).tracing;
    expect(tracing).toEqual({
      endpoint: "https://collector/custom/traces",
      serviceName: "orders",
      sampler: "parentbased_traceidratio",
      samplerRatio: 0.25,
      resourceAttributes: { "deployment.environment": "prod", team: "payments core" },
    });
  });

  it("names each bad OTEL_* variable", () => {
    const error = errorOf({
      OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318",
      OTEL_TRACES_SAMPLER: "sometimes",
      OTEL_TRACES_SAMPLER_ARG: "2",
      OTEL_RESOURCE_ATTRIBUTES: "novalue",
    });
    expect(error.issues.map((i) => i.path).sort()).toEqual([
      "OTEL_EXPORTER_OTLP_ENDPOINT",
      "OTEL_RESOURCE_ATTRIBUTES",
      "OTEL_TRACES_SAMPLER",
      "OTEL_TRACES_SAMPLER_ARG",
    ]);
    expect(error.message).toContain('environment OTEL_TRACES_SAMPLER_ARG: expected a ratio between 0 and 1, got "2"');
  });
});
