import { type InvokeOptions, invoke, MemoryStepStore } from "jetfn/testing";
import { describe, expect, it } from "vitest";
import processOrder from "./process-order.ts";

/** process-order as functions.yaml runs it (its defaults' retry, its output), with no simulated gateway failures. */
const options: InvokeOptions = {
  function: "process-order",
  subject: "orders.created",
  stream: "ORDERS",
  output: "orders.paid",
  retry: { maxAttempts: 5, initialDelay: "500ms", maxDelay: "30s" },
  config: { failureRate: 0 },
};

const order = { orderId: "o-1", customerId: "c-1", amount: 25 };

describe("process-order", () => {
  it("charges the order and publishes it, paid, to orders.paid", async () => {
    const result = await invoke(processOrder, order, { ...options, seq: 7 });
    expect(result.settlement.action).toBe("ack");
    expect(result.output).toMatchObject({ ...order, currency: "EUR", receiptId: expect.stringMatching(/^rcpt_o-1_/) });
    expect(result.published).toHaveLength(1);
    expect(result.published[0]).toMatchObject({ subject: "orders.paid", msgId: "process-order:ORDERS:7" });
    expect(result.logs).toContainEqual(expect.objectContaining({ level: "info", msg: "payment captured", orderId: "o-1" }));
  });

  it("charges once when a retry follows the charge: the retry replays the recorded receipt", async () => {
    const steps = new MemoryStepStore();
    // The first attempt charges, then its output is refused: the host would retry the event.
    const refuseOutput = (message: { subject: string }) => {
      if (message.subject === "orders.paid") throw new Error("storage full");
    };
    const first = await invoke(processOrder, order, { ...options, seq: 8, steps, publish: refuseOutput });
    expect(first.settlement).toMatchObject({ action: "nak", spared: true });
    const retry = await invoke(processOrder, order, { ...options, seq: 8, steps, deliveryCount: 2 });
    expect(retry.settlement.action).toBe("ack");
    expect((retry.output as { receiptId: string }).receiptId).toBe(receiptOf(steps));
  });

  it("dead-letters a declined card at once", async () => {
    // A run of its own (seq 2): the gateway answers a charge key it saw before with that charge's receipt.
    const result = await invoke(processOrder, { ...order, amount: 20_000 }, { ...options, seq: 2 });
    expect(result.settlement).toEqual({
      action: "dead-letter",
      reason: "non-retryable",
      error: "NonRetryableError: card declined for order o-1",
    });
    // The payment reminder, due an hour later, then the dead letter.
    expect(result.published.map((m) => m.subject)).toEqual(["orders.payment-reminder", "jetfn.dlq.process-order"]);
    expect(result.published[0]).toMatchObject({ msgId: "payment-reminder:o-1", deliverAt: expect.any(Number) });
    expect(result.published[0]!.deliverAt! - Date.now()).toBeGreaterThan(59 * 60_000);
  });

  it("dead-letters an order its schema refuses, without charging", async () => {
    const result = await invoke(processOrder, { ...order, amount: -1 }, options);
    expect(result.settlement).toMatchObject({ action: "dead-letter", reason: "invalid", error: expect.stringContaining("amount") });
    expect(result.logs.some((line) => line.msg === "payment captured")).toBe(false);
  });

  it("retries with backoff when the gateway is slower than the timeout", async () => {
    const result = await invoke(processOrder, order, { ...options, timeout: 1, deliveryCount: 2 });
    expect(result.outcome.kind).toBe("timeout");
    expect(result.settlement).toMatchObject({ action: "nak", delayMs: 1000 });
  });

  it("waits, without spending attempts, while the payment-api breaker is open", async () => {
    const result = await invoke(processOrder, order, { ...options, deliveryCount: 5, openBreakers: ["payment-api"] });
    expect(result.settlement).toEqual({ action: "nak", delayMs: 10_000, error: "BreakerOpenError: breaker payment-api is open" });
  });
});

/** The receipt id the store recorded for the charge step. */
function receiptOf(steps: MemoryStepStore): string {
  const record = [...steps.records.values()].map((text) => JSON.parse(text)).find((value) => value.state === "done");
  return record.result.id;
}
