/**
 * `ctx.step` in `jetfn/testing`: an in-memory store, so a second `invoke()` of the same
 * event replays what the first recorded, and a unit test can show the retry path.
 */
import { invoke, MemoryStepStore } from "jetfn/testing";
import { describe, expect, it } from "vitest";
import type { FunctionContext } from "../../runtime/sdk/types.ts";

/** Charges in a step (counted here), then fails on the first attempt. */
function charger(charges: string[]) {
  return async (order: { id: string }, ctx: FunctionContext) => {
    const receipt = await ctx.step("charge", ({ key }) => {
      charges.push(key);
      return { receipt: `r-${order.id}` };
    });
    if (ctx.deliveryCount === 1) throw new Error("the warehouse is down");
    return receipt;
  };
}

describe("ctx.step in jetfn/testing", () => {
  it("a second invoke() of the same event with the same store replays the step", async () => {
    const charges: string[] = [];
    const steps = new MemoryStepStore();
    const first = await invoke(charger(charges), { id: "o-1" }, { steps });
    expect(first.settlement).toMatchObject({ action: "nak", error: "the warehouse is down" });
    const retry = await invoke(charger(charges), { id: "o-1" }, { steps, deliveryCount: 2 });
    expect(retry.output).toEqual({ receipt: "r-o-1" });
    expect(charges).toEqual(["test:TEST:1:charge"]);
    expect([...steps.records.values()].map((text) => JSON.parse(text))).toMatchObject([
      { state: "done", result: { receipt: "r-o-1" } },
      { state: "completed" },
    ]);
  });

  it("a delivery of a run that completed is acked as a duplicate, without running the handler", async () => {
    const charges: string[] = [];
    const steps = new MemoryStepStore();
    let runs = 0;
    const handler = async (order: { id: string }, ctx: FunctionContext) => {
      runs++;
      return ctx.step("charge", () => charges.push(order.id));
    };
    const first = await invoke(handler, { id: "o-9" }, { steps, output: "orders.paid" });
    expect(first.settlement).toEqual({ action: "ack", output: 1 });
    // The ack was lost: the same message again.
    const again = await invoke(handler, { id: "o-9" }, { steps, output: "orders.paid", deliveryCount: 2 });
    expect(again.outcome).toEqual({ kind: "duplicate" });
    expect(again.settlement).toEqual({ action: "ack", output: undefined });
    expect(again.published).toEqual([]);
    expect(runs).toBe(1);
    expect(charges).toEqual(["o-9"]);
  });

  it("a handler that used no step writes no completion record", async () => {
    const steps = new MemoryStepStore();
    let runs = 0;
    const handler = async () => {
      runs++;
    };
    await invoke(handler, {}, { steps });
    await invoke(handler, {}, { steps, deliveryCount: 2 });
    expect(runs).toBe(2);
    expect(steps.records.size).toBe(0);
  });

  it("without a shared store, each invoke() runs its steps", async () => {
    const charges: string[] = [];
    await invoke(charger(charges), { id: "o-2" });
    await invoke(charger(charges), { id: "o-2" }, { deliveryCount: 2 });
    expect(charges).toHaveLength(2);
  });

  it("the run id is the Nats-Msg-Id header when the event has one", async () => {
    const charges: string[] = [];
    const steps = new MemoryStepStore();
    await invoke(charger(charges), { id: "o-3" }, { steps, seq: 1, headers: { "Nats-Msg-Id": "order-3" } });
    // Another sequence, the same message id: the same run.
    await invoke(charger(charges), { id: "o-3" }, { steps, seq: 2, deliveryCount: 2, headers: { "Nats-Msg-Id": "order-3" } });
    expect(charges).toEqual(["test:order-3:charge"]);
  });

  it("names the same step in a loop name, name#2, name#3", async () => {
    const keys = await invoke(async (_event: unknown, ctx: FunctionContext) => {
      const seen: string[] = [];
      for (let i = 0; i < 3; i++) seen.push(await ctx.step("item", ({ key }) => key));
      return seen;
    }, {});
    expect(keys.output).toEqual(["test:TEST:1:item", "test:TEST:1:item#2", "test:TEST:1:item#3"]);
  });

  it("a NonRetryableError from a step is recorded and thrown again without running it", async () => {
    const steps = new MemoryStepStore();
    let runs = 0;
    const handler = async (_event: unknown, ctx: FunctionContext) => {
      await ctx.step("charge", async () => {
        runs++;
        const { NonRetryableError } = await import("jetfn");
        throw new NonRetryableError("card declined");
      });
    };
    const first = await invoke(handler, {}, { steps });
    const again = await invoke(handler, {}, { steps, deliveryCount: 2 });
    expect(runs).toBe(1);
    for (const result of [first, again]) {
      expect(result.settlement).toEqual({ action: "dead-letter", reason: "non-retryable", error: "NonRetryableError: card declined" });
    }
  });

  it("a result that is not JSON: a StepError at the step, dead-lettered as step-not-json", async () => {
    const result = await invoke(async (_event: unknown, ctx: FunctionContext) => ctx.step("count", () => 10n), {}, { function: "counter" });
    expect(result.settlement).toEqual({
      action: "dead-letter",
      reason: "step-not-json",
      error: "StepError: step count of function counter: the result is a BigInt, which JSON cannot write (return it as a string)",
    });
  });

  it("a result over 256 KB: dead-lettered as step-too-large", async () => {
    const result = await invoke(async (_event: unknown, ctx: FunctionContext) => ctx.step("blob", () => "x".repeat(300 * 1024)), {});
    expect(result.settlement).toMatchObject({ action: "dead-letter", reason: "step-too-large" });
    expect(result.settlement.action === "dead-letter" && result.settlement.error).toBe(
      "StepError: step blob of function test: its result is 307202 bytes (300 KB) of JSON, over steps.maxResultSize 262144 bytes (256 KB)",
    );
  });
});
