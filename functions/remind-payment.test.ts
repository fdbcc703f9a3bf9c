import { invoke } from "jetfn/testing";
import { describe, expect, it } from "vitest";
import remindPayment from "./remind-payment.ts";

describe("remind-payment", () => {
  it("reminds the customer and acks", async () => {
    const result = await invoke(remindPayment, { orderId: "o-1", customerId: "c-1" }, { function: "remind-payment" });
    expect(result.settlement).toEqual({ action: "ack", output: undefined });
    expect(result.logs).toEqual([expect.objectContaining({ level: "info", msg: "reminded customer to pay", orderId: "o-1" })]);
  });
});
