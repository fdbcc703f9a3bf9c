import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, formatIssue, loadConfig } from "../../runtime/config/index.ts";
import { cleanup, errorsOf, FUNCTION_A, ORDERS_STREAM } from "./config-fixtures.ts";

afterAll(cleanup);

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

  it("reports a bad isolation or memoryLimit at its value, in defaults: too", () => {
    expect(
      errorsOf(["defaults:", "  memoryLimit: 512", "functions:", ...FUNCTION_A, "    isolation: thread", "    memoryLimit: 8MB"]),
    ).toEqual([
      "functions.yaml:2:16 defaults.memoryLimit: expected a size like 256MB, got 512",
      'functions.yaml:8:16 functions[0].isolation: expected worker or none, got "thread"',
      'functions.yaml:9:18 functions[0].memoryLimit: expected a size of at least 16MB, got "8MB"',
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

  it("reports duplicate stream names, and two functions sharing a durable", () => {
    expect(
      errorsOf([
        ...ORDERS_STREAM,
        ...ORDERS_STREAM.slice(1),
        "functions:",
        ...FUNCTION_A,
        "    durable: SHARED",
        "  - name: b",
        "    handler: functions/b.ts",
        "    stream: ORDERS",
        "    subjects: [orders.b]",
        "    durable: SHARED",
      ]),
    ).toEqual([
      'functions.yaml:4:11 streams[1].name: duplicate stream name "ORDERS" (first used by streams[0])',
      'functions.yaml:16:14 functions[1].durable: durable "SHARED" on stream ORDERS is already used by function "a"',
    ]);
  });

  it("reports a handler file that does not exist", () => {
    expect(errorsOf(["functions:", "  - name: a", "    handler: functions/nope.ts", "    stream: S", "    subjects: [x]"])).toEqual([
      "functions.yaml:3:14 functions[0].handler: handler file not found: functions/nope.ts",
    ]);
  });

  it("reports a subject that the declared stream does not capture", () => {
    expect(errorsOf([...ORDERS_STREAM, "functions:", ...FUNCTION_A.slice(0, 3), "    subjects: [orders.a, payments.b]"])).toEqual([
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

  it("reports a recursive alias in config:", () => {
    expect(errorsOf(["functions:", ...FUNCTION_A, "    config: { loop: &x [*x] }"])).toEqual([
      "functions.yaml:6:13 functions[0].config: a value cannot contain itself (recursive alias)",
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

  it("refuses an output that feeds the function's own subjects", () => {
    expect(errorsOf(["functions:", ...FUNCTION_A, "    output: orders.created"])).toEqual([
      'functions.yaml:6:13 functions[0].output: output "orders.created" is one of the function\'s own subjects: every result would run it again',
    ]);
  });
});

describe("loadConfig: schedule:", () => {
  it("compiles a function with only a schedule onto jetfn's schedule stream, with the defaults", async () => {
    const { load } = await import("./config-fixtures.ts");
    const config = load(["functions:", "  - name: expire-unpaid", "    handler: functions/a.ts", '    schedule: { cron: "*/10 * * * *" }']);
    expect(config.functions[0]).toMatchObject({
      stream: "JETFN_SCHEDULES",
      subjects: ["jetfn.schedule.expire-unpaid"],
      deliverPolicy: { kind: "new" },
      schedule: { cron: "*/10 * * * *", timezone: "UTC", catchUp: "latest", maxCatchUp: 10, payload: {} },
    });
    const both = load([
      ...ORDERS_STREAM,
      "functions:",
      ...FUNCTION_A,
      '    schedule: { cron: "0 * * * *", timezone: Europe/Berlin, payload: { scope: eu } }',
    ]);
    expect(both.functions[0]).toMatchObject({
      stream: "ORDERS",
      deliverPolicy: { kind: "all" },
      schedule: { timezone: "Europe/Berlin", payload: { scope: "eu" } },
    });
  });

  it("reports a bad cron, time zone, catchUp or maxCatchUp at its value, and stream/subjects missing without a schedule", () => {
    expect(
      errorsOf([
        "functions:",
        "  - name: a",
        "    handler: functions/a.ts",
        '    schedule: { cron: "61 * * * *", timezone: Mars/Base, catchUp: sometimes }',
        "  - name: b",
        "    handler: functions/b.ts",
        '    schedule: { cron: "* * * * *", maxCatchUp: 5 }',
        "  - name: c",
        "    handler: functions/a.ts",
        '    subjects: ["c.x"]',
      ]),
    ).toEqual([
      'functions.yaml:4:23 functions[0].schedule.cron: invalid cron pattern "61 * * * *": CronPattern: Invalid value for minute: 61',
      'functions.yaml:4:47 functions[0].schedule.timezone: expected an IANA time zone like Europe/Berlin or UTC, got "Mars/Base"',
      'functions.yaml:4:67 functions[0].schedule.catchUp: expected none, latest or all, got "sometimes"',
      "functions.yaml:7:48 functions[1].schedule.maxCatchUp: maxCatchUp goes with catchUp: all",
      'functions.yaml:8:5 functions[2].stream: missing required key "stream"',
    ]);
  });
});

describe("loadConfig: debounce:", () => {
  it("compiles a key (a JSON path, subject:N or header:Name), a period and an optional maxWait", async () => {
    const { load } = await import("./config-fixtures.ts");
    const config = load([
      ...ORDERS_STREAM,
      "functions:",
      ...FUNCTION_A,
      "    debounce: { key: customer.id, period: 5s, maxWait: 1m }",
      "  - name: b",
      "    handler: functions/b.ts",
      "    stream: ORDERS",
      "    subjects: [orders.updated]",
      "    debounce: { key: header:Tenant, period: 1s }",
    ]);
    expect(config.functions[0]!.debounce).toEqual({ key: { kind: "json", path: ["customer", "id"] }, periodMs: 5000, maxWaitMs: 60_000 });
    expect(config.functions[1]!.debounce).toEqual({ key: { kind: "header", name: "Tenant" }, periodMs: 1000 });
  });

  it("reports a bad key, a period out of range, a maxWait under the period, ordering beside it, and events missing", () => {
    expect(
      errorsOf([
        ...ORDERS_STREAM,
        "functions:",
        ...FUNCTION_A,
        "    debounce: { key: subject:0, period: 100ms }",
        "  - name: b",
        "    handler: functions/b.ts",
        "    stream: ORDERS",
        "    subjects: [orders.updated]",
        "    debounce: { key: id, period: 48h }",
        "  - name: c",
        "    handler: functions/a.ts",
        "    stream: ORDERS",
        "    subjects: [orders.paid]",
        "    debounce: { key: id, period: 10s, maxWait: 5s }",
        "  - name: d",
        "    handler: functions/b.ts",
        '    schedule: { cron: "* * * * *" }',
        "    debounce: { key: id, period: 10s }",
        "  - name: e",
        "    handler: functions/a.ts",
        "    stream: ORDERS",
        "    subjects: [orders.shipped]",
        "    debounce: { key: id, period: 10s }",
        "    ordering: { key: id }",
      ]),
    ).toEqual([
      'functions.yaml:9:22 functions[0].debounce.key: expected a JSON path like customer.id, subject:2 or header:Name, got "subject:0"',
      'functions.yaml:9:41 functions[0].debounce.period: expected a duration from 1s to 24h, got "100ms"',
      'functions.yaml:14:34 functions[1].debounce.period: expected a duration from 1s to 24h, got "48h"',
      "functions.yaml:19:48 functions[2].debounce.maxWait: maxWait must be at least the period",
      'functions.yaml:20:5 functions[3].stream: missing required key "stream"',
      'functions.yaml:20:5 functions[3].subjects: missing required key "subjects"',
      "functions.yaml:28:15 functions[4].debounce: debounce and ordering do not go together: a debounced key runs only its last event",
    ]);
  });
});

describe("loadConfig: rateLimit:", () => {
  it("compiles limit, period (default 1s) and burst (default a tenth of the limit, at least 1)", async () => {
    const { load } = await import("./config-fixtures.ts");
    const config = load([...ORDERS_STREAM, "functions:", ...FUNCTION_A, "    rateLimit: { limit: 100, period: 1m }"]);
    expect(config.functions[0]!.rateLimit).toEqual({ limit: 100, periodMs: 60_000, burst: 10 });
    const small = load([...ORDERS_STREAM, "functions:", ...FUNCTION_A, "    rateLimit: { limit: 3, burst: 2 }"]);
    expect(small.functions[0]!.rateLimit).toEqual({ limit: 3, periodMs: 1000, burst: 2 });
  });

  it("reports a limit of 0, an unknown key, ordering beside it, and a key that is not a path", () => {
    expect(
      errorsOf([
        ...ORDERS_STREAM,
        "functions:",
        ...FUNCTION_A,
        "    rateLimit: { limit: 0, period: 1s, per: 1 }",
        "  - name: b",
        "    handler: functions/b.ts",
        "    stream: ORDERS",
        "    subjects: [orders.updated]",
        "    rateLimit: { limit: 5 }",
        "    ordering: { key: id }",
        "  - name: c",
        "    handler: functions/a.ts",
        "    stream: ORDERS",
        "    subjects: [orders.paid]",
        '    rateLimit: { limit: 5, key: "customer..id" }',
      ]),
    ).toEqual([
      "functions.yaml:9:25 functions[0].rateLimit.limit: expected an integer >= 1, got 0",
      'functions.yaml:9:40 functions[0].rateLimit.per: unknown key "per"',
      "functions.yaml:14:16 functions[1].rateLimit: rateLimit and ordering do not go together: every partition's consumer sees every event",
      'functions.yaml:20:33 functions[2].rateLimit.key: expected a JSON path like customer.id, subject:2 or header:Name, got "customer..id"',
    ]);
  });
});
