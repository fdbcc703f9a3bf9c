import { defineFunction, NonRetryableError } from "jetfn";
import { PaymentClient } from "./lib/payment-client.ts";
import { Order } from "./schemas/order.ts";

let payments: PaymentClient | undefined;

/**
 * Charges a new order; its return value is published to `orders.paid` (see functions.yaml).
 * The charge is a durable step: a retry of the same order (a failed output publish, a lost
 * ack, a host that died) gets the recorded receipt instead of charging again, and the
 * step's key goes to the gateway as its idempotency key for the one case a record cannot
 * cover (docs/steps.md). The payment API sits behind a breaker shared by every invocation:
 * after 5 failures in a row, calls fail fast for 10 s and the orders wait in the stream
 * instead of piling up retries (or dead letters) against a gateway that is down. A declined
 * card schedules a payment reminder an hour later (`remind-payment` sends it).
 */
export default defineFunction({
  schema: Order,
  async handler(order, ctx) {
    payments ??= new PaymentClient({
      failureRate: Number(ctx.config.failureRate ?? 0),
      ...(ctx.config.declineAbove !== undefined ? { declineAbove: Number(ctx.config.declineAbove) } : {}),
    });
    const breaker = ctx.breaker("payment-api", { failureThreshold: 5, openFor: "10s" });
    const receipt = await ctx.step("charge", ({ key, signal }) =>
      breaker.execute(() => payments!.charge(order, { signal, idempotencyKey: key })),
    );
    if (receipt.declined) {
      // Ask the customer to pay another way, in an hour: a delayed event (it waits in
      // JETFN_DELAYED, not in a consumer); the id makes a second decline schedule it once.
      await ctx.publish(
        "orders.payment-reminder",
        { orderId: order.orderId, customerId: order.customerId },
        { delay: "1h", msgId: `payment-reminder:${order.orderId}` },
      );
      throw new NonRetryableError(`card declined for order ${order.orderId}`);
    }
    ctx.log.info({ orderId: order.orderId, receiptId: receipt.id }, "payment captured");
    return { ...order, receiptId: receipt.id, paidAt: new Date().toISOString() };
  },
});
