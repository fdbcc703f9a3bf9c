/** `batch:` in functions.yaml: what it compiles to, and each way of getting it wrong (file, line and key). */
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, errorsOf, FUNCTION_A, load, ORDERS_STREAM } from "./config-fixtures.ts";

afterAll(cleanup);

const FUNCTION_B = ["  - name: b", "    handler: functions/b.ts", "    stream: ORDERS", "    subjects: [orders.updated]"];

describe("loadConfig: batch:", () => {
  it("compiles maxSize, maxWait (default 1s) and maxBytes, and holds (concurrency + 1) batches in ack pending", () => {
    const config = load([
      ...ORDERS_STREAM,
      "functions:",
      ...FUNCTION_A,
      "    concurrency: 16",
      "    batch: { maxSize: 100, maxWait: 2s, maxBytes: 1MB }",
      ...FUNCTION_B,
      "    batch: { maxSize: 10 }",
    ]);
    expect(config.functions[0]!.batch).toEqual({ maxSize: 100, maxWaitMs: 2000, maxBytes: 1024 * 1024 });
    expect(config.functions[0]!.maxAckPending).toBe(1700);
    expect(config.functions[1]!.batch).toEqual({ maxSize: 10, maxWaitMs: 1000 });
    expect(config.functions[1]!.maxAckPending).toBe(1000);
  });

  it("reports maxSize 0, a missing maxSize, an unknown key and maxWait over the ack wait at their keys", () => {
    expect(
      errorsOf([
        ...ORDERS_STREAM,
        "functions:",
        ...FUNCTION_A,
        "    batch: { maxSize: 0, maxWait: 1s }",
        ...FUNCTION_B,
        "    batch: { maxWait: 1s, size: 3 }",
        "  - name: c",
        "    handler: functions/a.ts",
        "    stream: ORDERS",
        "    subjects: [orders.paid]",
        "    ackWait: 10s",
        "    batch: { maxSize: 10, maxWait: 20s }",
      ]),
    ).toEqual([
      "functions.yaml:9:23 functions[0].batch.maxSize: expected an integer from 1 to 10000, got 0",
      'functions.yaml:14:12 functions[1].batch.maxSize: missing required key "maxSize"',
      'functions.yaml:14:27 functions[1].batch.size: unknown key "size"',
      "functions.yaml:20:36 functions[2].batch.maxWait: batch maxWait 20s is longer than the ack wait 10s: a batch's first event would be redelivered before the batch is handed over",
    ]);
  });

  it("reports batch with ordering, output, debounce, invoke: true, schedule or idempotency, saying why", () => {
    expect(
      errorsOf([
        ...ORDERS_STREAM,
        "functions:",
        ...FUNCTION_A,
        "    batch: { maxSize: 10 }",
        "    ordering: { key: id }",
        "    output: orders.loaded",
        "    invoke: true",
        ...FUNCTION_B,
        "    batch: { maxSize: 10 }",
        "    debounce: { key: id, period: 10s }",
        "    idempotency: { key: id }",
        "  - name: c",
        "    handler: functions/a.ts",
        "    batch: { maxSize: 10 }",
        '    schedule: { cron: "* * * * *" }',
      ]),
    ).toEqual([
      "functions.yaml:10:15 functions[0].ordering: batch and ordering do not go together: a batch runs many keys' events at once, out of their order",
      "functions.yaml:11:13 functions[0].output: batch and output do not go together: a batch handler returns nothing per event to publish (use ctx.publish)",
      "functions.yaml:12:13 functions[0].invoke: batch and invoke: true do not go together: a synchronous call is one event with one answer",
      "functions.yaml:18:15 functions[1].debounce: batch and debounce do not go together: a debounced key runs one event, its last",
      "functions.yaml:19:18 functions[1].idempotency: batch and idempotency do not go together (not built yet): a business key is checked for one event's run",
      "functions.yaml:23:15 functions[2].schedule: batch and schedule do not go together: each tick runs on its own",
    ]);
  });

  it("reports an invoke route to a batch function", () => {
    expect(
      errorsOf([
        ...ORDERS_STREAM,
        "functions:",
        ...FUNCTION_A,
        "    batch: { maxSize: 10 }",
        "routes:",
        "  - { route: POST /load, invoke: a }",
      ]),
    ).toEqual([
      'functions.yaml:11:34 routes[0].invoke: function "a" takes batches (batch:): a synchronous call is one event with one answer',
    ]);
  });
});
