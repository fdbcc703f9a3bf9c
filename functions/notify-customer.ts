import { defineFunction } from "jetfn";
import { z } from "zod";

const PaidOrder = z.object({
  orderId: z.string(),
  customerId: z.string(),
  amount: z.number(),
  currency: z.string(),
  receiptId: z.string(),
});

/** Tells the customer their order is paid (here: a log line standing in for an email). */
export default defineFunction({
  schema: PaidOrder,
  async handler(order, ctx) {
    ctx.log.info(
      { customerId: order.customerId, orderId: order.orderId, receiptId: order.receiptId },
      `notified customer: ${order.amount} ${order.currency} received`,
    );
  },
});
