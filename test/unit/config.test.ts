import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, formatIssue, loadConfig } from "../../runtime/config/index.ts";
import type { CompiledConfig } from "../../runtime/config/index.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Writes `functions.yaml` (lines joined by "\n") next to dummy handler files; returns its path. */
function project(lines: readonly string[], handlers: readonly string[] = ["functions/a.ts", "functions/b.ts"]): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "jetfn-config-"));
  dirs.push(dir);
  for (const handler of handlers) {
    mkdirSync(path.dirname(path.join(dir, handler)), { recursive: true });
    writeFileSync(path.join(dir, handler), "export default async () => {};\n");
  }
  const file = path.join(dir, "functions.yaml");
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

function load(lines: readonly string[]): CompiledConfig {
  return loadConfig(project(lines));
}

/** The error's lines, with the temp file's absolute path shown as `functions.yaml`. */
function errorsOf(lines: readonly string[]): string[] {
  const file = project(lines);
  try {
    loadConfig(file);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message.split("\n").map((line) => line.replace(file, "functions.yaml"));
  }
  throw new Error("expected a ConfigError");
}

const ORDERS_STREAM = ["streams:", "  - name: ORDERS", '    subjects: ["orders.>"]'];
const FUNCTION_A = ["  - name: a", "    handler: functions/a.ts", "    stream: ORDERS", "    subjects: [orders.created]"];

describe("loadConfig: compiling", () => {
  it("applies built-in defaults and resolves paths", () => {
    const file = project([...ORDERS_STREAM, "functions:", ...FUNCTION_A]);
    const config = loadConfig(file);
    expect(config.file).toBe(file);
    expect(config.rootDir).toBe(path.dirname(file));
    expect(config.streams).toEqual([
      { name: "ORDERS", subjects: ["orders.>"], storage: "file", replicas: 1, maxAgeMs: 0, duplicateWindowMs: 120_000 },
    ]);
    expect(config.functions).toEqual([
      {
        name: "a",
        handlerPath: path.join(path.dirname(file), "functions/a.ts"),
        exportName: "default",
        stream: "ORDERS",
        subjects: ["orders.created"],
        durable: "jetfn_a",
        concurrency: 16,
        timeoutMs: 30_000,
        ackWaitMs: 35_000,
        maxAckPending: 1000,
        retry: { maxAttempts: 5, backoff: "exponential", initialDelayMs: 1000, maxDelayMs: 300_000, jitter: true },
        deadLetter: "jetfn.dlq.a",
        deliverPolicy: { kind: "all" },
        encoding: "json",
        config: {},
      },
    ]);
    expect(config.functions[0]).not.toHaveProperty("breaker");
    expect(config.functions[0]).not.toHaveProperty("output");
  });

  it("derives durable and deadLetter from the name, and reads #exportName", () => {
    const config = load([
      "functions:",
      "  - name: charge-payment",
      "    handler: functions/a.ts#charge",
      "    stream: ORDERS",
      "    subjects: orders.created",
      "  - name: b",
      "    handler: functions/b.ts",
      "    stream: ORDERS",
      "    subjects: [orders.b]",
      "    durable: ORDER_PROCESSOR",
      "    deadLetter: dlq.b",
      "    output: payments.charged",
    ]);
    const [charge, b] = config.functions;
    expect(charge).toMatchObject({
      exportName: "charge",
      durable: "jetfn_charge_payment",
      deadLetter: "jetfn.dlq.charge-payment",
      subjects: ["orders.created"],
    });
    expect(b).toMatchObject({ exportName: "default", durable: "ORDER_PROCESSOR", deadLetter: "dlq.b", output: "payments.charged" });
  });

  it("layers built-ins < defaults < entry, merging retry and breaker key by key", () => {
    const config = load([
      "defaults:",
      "  concurrency: 4",
      "  timeout: 10s",
      "  encoding: text",
      "  retry: { maxAttempts: 3, backoff: fixed }",
      "  breaker: { failureThreshold: 2 }",
      "  config: { currency: EUR }",
      "functions:",
      ...FUNCTION_A,
      "    timeout: 1m",
      "    retry: { maxAttempts: 7, initialDelay: 250ms }",
      "    breaker: { openFor: 1m }",
      "  - name: b",
      "    handler: functions/b.ts",
      "    stream: ORDERS",
      "    subjects: [orders.b]",
      "    breaker: false",
      "    config: { currency: USD }",
    ]);
    const [a, b] = config.functions;
    expect(a).toMatchObject({ concurrency: 4, timeoutMs: 60_000, ackWaitMs: 65_000, encoding: "text" });
    expect(a?.retry).toEqual({ maxAttempts: 7, backoff: "fixed", initialDelayMs: 250, maxDelayMs: 300_000, jitter: true });
    expect(a?.breaker).toEqual({ failureThreshold: 2, openForMs: 60_000, halfOpenRequests: 1 });
    expect(a?.config).toEqual({ currency: "EUR" });
    expect(b).toMatchObject({ timeoutMs: 10_000, ackWaitMs: 15_000, config: { currency: "USD" } });
    expect(b?.retry).toEqual({ maxAttempts: 3, backoff: "fixed", initialDelayMs: 1000, maxDelayMs: 300_000, jitter: true });
    expect(b?.breaker).toBeUndefined();
  });

  it("defaults maxAckPending to max(1000, concurrency) and honours explicit ackWait", () => {
    const config = load(["functions:", ...FUNCTION_A, "    concurrency: 2000", "    ackWait: 2s"]);
    expect(config.functions[0]).toMatchObject({ concurrency: 2000, maxAckPending: 2000, ackWaitMs: 2000 });
  });

  it.each([
    ["all", { kind: "all" }],
    ["new", { kind: "new" }],
    ["last", { kind: "last" }],
    ["{ startSeq: 42 }", { kind: "startSeq", startSeq: 42 }],
    ['{ startTime: "2024-05-01T12:00:00Z" }', { kind: "startTime", startTime: new Date("2024-05-01T12:00:00Z") }],
    ["{ startTime: 2024-05-01T14:00:00+02:00 }", { kind: "startTime", startTime: new Date("2024-05-01T12:00:00Z") }],
  ])("reads deliverPolicy %s", (yaml, expected) => {
    const config = load(["functions:", ...FUNCTION_A, `    deliverPolicy: ${yaml}`]);
    expect(config.functions[0]?.deliverPolicy).toEqual(expected);
  });

  it("compiles stream settings and allows functions on streams not declared here", () => {
    const config = load([
      "streams:",
      "  - name: ORDERS",
      "    subjects: orders.*",
      "    storage: memory",
      "    replicas: 3",
      "    maxAge: 168h",
      "    duplicateWindow: 30s",
      "functions:",
      "  - name: a",
      "    handler: functions/a.ts",
      "    stream: ELSEWHERE",
      "    subjects: [anything.>]",
    ]);
    expect(config.streams[0]).toEqual({
      name: "ORDERS",
      subjects: ["orders.*"],
      storage: "memory",
      replicas: 3,
      maxAgeMs: 604_800_000,
      duplicateWindowMs: 30_000,
    });
  });

  it("returns a deeply frozen result", () => {
    const config = load([
      ...ORDERS_STREAM,
      "functions:",
      ...FUNCTION_A,
      "    deliverPolicy: { startSeq: 3 }",
      "    config: { nested: { list: [1, { deep: true }] } }",
    ]);
    const fn = config.functions[0];
    const nested = fn?.config.nested as { list: [number, { deep: boolean }] };
    for (const value of [config, config.streams, config.streams[0], config.functions, fn, fn?.retry, fn?.subjects,
      fn?.deliverPolicy, fn?.config, nested, nested.list, nested.list[1]]) {
      expect(Object.isFrozen(value)).toBe(true);
    }
    expect(() => {
      (fn as { concurrency: number }).concurrency = 1;
    }).toThrow(TypeError);
  });

  it("keeps __proto__ keys in config: as plain data without polluting prototypes", () => {
    const config = load([
      "functions:",
      ...FUNCTION_A,
      "    config:",
      "      __proto__: { polluted: true }",
      "      nested: { __proto__: { alsoPolluted: true } }",
    ]);
    const fnConfig = config.functions[0]?.config ?? {};
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).alsoPolluted).toBeUndefined();
    expect(Object.getPrototypeOf(fnConfig)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(fnConfig, "__proto__")?.value).toEqual({ polluted: true });
    expect(Object.getPrototypeOf(fnConfig.nested)).toBe(Object.prototype);
    expect((fnConfig as { polluted?: unknown }).polluted).toBeUndefined();
  });
});

describe("loadConfig: errors", () => {
  it("reports unknown keys at the key, with a suggestion when one is close", () => {
    expect(
      errorsOf([
        "functoins: []",
        "functions:",
        ...FUNCTION_A,
        "    timout: 10s",
        "    retry:",
        "      maxAttempts: 3",
        "      backof: fixed",
        "      colour: red",
      ]),
    ).toEqual([
      'functions.yaml:1:1 functoins: unknown key "functoins" (did you mean "functions"?)',
      'functions.yaml:7:5 functions[0].timout: unknown key "timout" (did you mean "timeout"?)',
      'functions.yaml:10:7 functions[0].retry.backof: unknown key "backof" (did you mean "backoff"?)',
      'functions.yaml:11:7 functions[0].retry.colour: unknown key "colour"',
    ]);
  });

  it("reports a bad duration at its value", () => {
    expect(errorsOf(["functions:", ...FUNCTION_A, "    timeout: ten"])).toEqual([
      'functions.yaml:6:14 functions[0].timeout: expected a duration like 10s, got "ten"',
    ]);
  });

  it("reports a missing required key at the map that lacks it", () => {
    expect(errorsOf(["functions:", "  - name: a", "    stream: ORDERS", "    subjects: [orders.a]"])).toEqual([
      'functions.yaml:2:5 functions[0].handler: missing required key "handler"',
    ]);
    expect(errorsOf(["streams: []"])).toEqual(['functions.yaml:1:1 functions: missing required key "functions"']);
  });

  it("reports wrong types", () => {
    expect(
      errorsOf([
        "functions:",
        "  - name: a",
        "    handler: functions/a.ts",
        "    stream: ORDERS",
        "    subjects: 5",
        '    concurrency: "8"',
        "    retry: { jitter: yes }",
        "    encoding: xml",
        "    config: [1]",
      ]),
    ).toEqual([
      "functions.yaml:5:15 functions[0].subjects: expected a list, got 5",
      'functions.yaml:6:18 functions[0].concurrency: expected an integer >= 1, got "8"',
      'functions.yaml:7:22 functions[0].retry.jitter: expected true or false, got "yes"',
      'functions.yaml:8:15 functions[0].encoding: expected json, text or binary, got "xml"',
      "functions.yaml:9:13 functions[0].config: expected a map, got a list",
    ]);
  });

  it("reports invalid names and subjects", () => {
    expect(
      errorsOf([
        "streams:",
        "  - name: my.stream",
        "    subjects: [orders..x]",
        "functions:",
        "  - name: Charge_Payment",
        "    handler: functions/a.ts#not-an-identifier",
        "    stream: ORDERS",
        "    subjects: [orders.>.x]",
        "    durable: has space",
        "    output: orders.*",
      ]),
    ).toEqual([
      'functions.yaml:2:11 streams[0].name: expected a stream name without spaces, ".", "*", ">", "/" or "\\", got "my.stream"',
      'functions.yaml:3:16 streams[0].subjects[0]: expected a NATS subject like orders.created, got "orders..x"',
      'functions.yaml:5:11 functions[0].name: expected a name of lowercase letters, digits and "-" (like charge-payment), got "Charge_Payment"',
      'functions.yaml:6:14 functions[0].handler: expected a file path like functions/charge.ts, optionally with #exportName, got "functions/a.ts#not-an-identifier"',
      'functions.yaml:8:16 functions[0].subjects[0]: expected a NATS subject like orders.created, got "orders.>.x"',
      'functions.yaml:9:14 functions[0].durable: expected a consumer name without spaces, ".", "*", ">", "/" or "\\", got "has space"',
      'functions.yaml:10:13 functions[0].output: expected a NATS subject without wildcards like payments.charged, got "orders.*"',
    ]);
  });

  it("reports duplicate function names at the second one", () => {
    expect(errorsOf(["functions:", ...FUNCTION_A, ...FUNCTION_A])).toEqual([
      'functions.yaml:6:11 functions[1].name: duplicate function name "a" (first used by functions[0])',
    ]);
  });

  it("reports a handler file that does not exist", () => {
    expect(
      errorsOf(["functions:", "  - name: a", "    handler: functions/nope.ts", "    stream: S", "    subjects: [x]"]),
    ).toEqual(["functions.yaml:3:14 functions[0].handler: handler file not found: functions/nope.ts"]);
  });

  it("reports a subject that the declared stream does not capture", () => {
    expect(errorsOf([...ORDERS_STREAM, "functions:", ...FUNCTION_A.slice(0, 3), "    subjects: [orders.a, payments.b]"]))
      .toEqual([
        'functions.yaml:8:26 functions[0].subjects[1]: subject "payments.b" is not captured by stream ORDERS (subjects: orders.>)',
      ]);
  });

  it("reports per-function keys set under defaults", () => {
    expect(errorsOf(["defaults:", "  stream: ORDERS", "functions:", ...FUNCTION_A])).toEqual([
      'functions.yaml:2:3 defaults.stream: "stream" is set per function and cannot be in defaults',
    ]);
  });

  it("reports maxAckPending below concurrency where it was set", () => {
    expect(errorsOf(["functions:", ...FUNCTION_A, "    concurrency: 20", "    maxAckPending: 10"])).toEqual([
      "functions.yaml:7:20 functions[0].maxAckPending: maxAckPending 10 is less than the concurrency 20",
    ]);
    expect(errorsOf(["defaults:", "  maxAckPending: 10", "functions:", ...FUNCTION_A, "    concurrency: 20"])).toEqual([
      'functions.yaml:2:18 defaults.maxAckPending: maxAckPending 10 is less than the concurrency 20 of function "a"',
    ]);
  });

  it("reports an ackWait under 1s and an initialDelay beyond maxDelay", () => {
    expect(errorsOf(["functions:", ...FUNCTION_A, "    ackWait: 500ms"])).toEqual([
      'functions.yaml:6:14 functions[0].ackWait: expected a duration of at least 1s, got "500ms"',
    ]);
    expect(errorsOf(["functions:", ...FUNCTION_A, "    retry: { initialDelay: 10m }"])).toEqual([
      "functions.yaml:6:28 functions[0].retry.initialDelay: retry initialDelay 10m is longer than maxDelay 5m",
    ]);
  });

  it("reports a bad deliverPolicy at the offending key", () => {
    expect(errorsOf(["functions:", ...FUNCTION_A, "    deliverPolicy: { startSeq: 0 }"])).toEqual([
      "functions.yaml:6:32 functions[0].deliverPolicy.startSeq: expected an integer >= 1, got 0",
    ]);
    expect(errorsOf(["functions:", ...FUNCTION_A, "    deliverPolicy: { startTime: yesterday }"])).toEqual([
      'functions.yaml:6:33 functions[0].deliverPolicy.startTime: expected an ISO date like 2024-05-01T00:00:00Z, got "yesterday"',
    ]);
  });

  it("reports YAML syntax errors with the position yaml gives", () => {
    expect(errorsOf(["functions:", "  - name: a", "    handler: [unclosed"])).toEqual([
      "functions.yaml:4:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ]);
  });

  it("reports a missing or empty file", () => {
    const missing = path.join(os.tmpdir(), "jetfn-no-such-dir", "functions.yaml");
    expect(() => loadConfig(missing)).toThrow(new ConfigError([{ file: missing, path: "", message: "file not found" }]));
    expect(() => loadConfig(missing)).toThrow(`${missing}: file not found`);
    expect(errorsOf([""])).toEqual(["functions.yaml: the file is empty; expected a map with a functions: list"]);
  });

  it("collects every issue, sorted by position", () => {
    const found = errorsOf(["functions:", ...FUNCTION_A, "    timeout: ten", "  - name: B", "    handler: functions/a.ts"]);
    expect(found).toEqual([
      'functions.yaml:6:14 functions[0].timeout: expected a duration like 10s, got "ten"',
      'functions.yaml:7:5 functions[1].stream: missing required key "stream"',
      'functions.yaml:7:5 functions[1].subjects: missing required key "subjects"',
      'functions.yaml:7:11 functions[1].name: expected a name of lowercase letters, digits and "-" (like charge-payment), got "B"',
    ]);
  });
});

describe("formatIssue", () => {
  it("shows files inside cwd relative to it, others as they are", () => {
    const issue = { file: "/srv/app/functions.yaml", line: 12, column: 14, path: "functions[2].timeout", message: "m" };
    expect(formatIssue(issue, "/srv/app")).toBe("functions.yaml:12:14 functions[2].timeout: m");
    expect(formatIssue(issue, "/elsewhere")).toBe("/srv/app/functions.yaml:12:14 functions[2].timeout: m");
    expect(formatIssue({ file: "environment", path: "JETFN_HTTP_PORT", message: "m" })).toBe("environment JETFN_HTTP_PORT: m");
  });
});
