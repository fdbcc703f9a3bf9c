import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../runtime/config/index.ts";
import { cleanup, FUNCTION_A, load, ORDERS_STREAM, project } from "./config-fixtures.ts";

afterAll(cleanup);

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
        isolation: "worker",
        memoryLimitMb: 512,
        invoke: false,
        steps: { ttlMs: 7 * 24 * 3_600_000, maxResultBytes: 256 * 1024 },
      },
    ]);
    expect(config.routes).toEqual([]);
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

  it("accepts YAML anchors and merge keys between entries", () => {
    const config = load([
      "functions:",
      "  - &base",
      "    name: a",
      "    handler: functions/a.ts",
      "    stream: ORDERS",
      "    subjects: [orders.created]",
      "    timeout: 5s",
      "  - <<: *base",
      "    name: b",
      "    durable: B",
    ]);
    expect(config.functions.map((fn) => [fn.name, fn.durable, fn.timeoutMs])).toEqual([
      ["a", "jetfn_a", 5000],
      ["b", "B", 5000],
    ]);
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
    for (const value of [
      config,
      config.streams,
      config.streams[0],
      config.functions,
      fn,
      fn?.retry,
      fn?.subjects,
      fn?.deliverPolicy,
      fn?.config,
      nested,
      nested.list,
      nested.list[1],
    ]) {
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
