import { invoke } from "jetfn/testing";
import { describe, expect, it } from "vitest";
import notifyCustomer from "./notify-customer.ts";

const paid = { orderId: "o-1", customerId: "c-1", amount: 25, currency: "EUR", receiptId: "rcpt_1" };

describe("notify-customer", () => {
  it("notifies the customer and acks, publishing nothing", async () => {
    const result = await invoke(notifyCustomer, paid, { function: "notify-customer", subject: "orders.paid" });
    expect(result.settlement).toEqual({ action: "ack", output: undefined });
    expect(result.published).toEqual([]);
    expect(result.logs).toEqual([
      expect.objectContaining({ level: "info", msg: "notified customer: 25 EUR received", customerId: "c-1", receiptId: "rcpt_1" }),
    ]);
  });

  it("dead-letters a paid order without a receipt", async () => {
    const { receiptId: _, ...unpaid } = paid;
    const result = await invoke(notifyCustomer, unpaid);
    expect(result.settlement).toMatchObject({ action: "dead-letter", reason: "invalid", error: expect.stringContaining("receiptId") });
  });
});
