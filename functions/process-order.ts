import { defineFunction, NonRetryableError } from "jetfn";
import { z } from "zod";
import { PaymentClient } from "./lib/payment-client.ts";

const Order = z.object({
  orderId: z.string().min(1),
  customerId: z.string().min(1),
  amount: z.number().positive(),
  currency: z.string().length(3).default("EUR"),
});

let payments: PaymentClient | undefined;

/** Charges a new order; its return value is published to `orders.paid` (see functions.yaml). */
export default defineFunction({
  schema: Order,
  async handler(order, ctx) {
    payments ??= new PaymentClient({ failureRate: Number(ctx.config.failureRate ?? 0) });
    const receipt = await payments.charge(order, ctx.signal);
    if (receipt.declined) throw new NonRetryableError(`card declined for order ${order.orderId}`);
    ctx.log.info({ orderId: order.orderId, receiptId: receipt.id }, "payment captured");
    return { ...order, receiptId: receipt.id, paidAt: new Date().toISOString() };
  },
});
