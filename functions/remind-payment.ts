import { defineFunction } from "jetfn";
import { z } from "zod";

const Reminder = z.object({ orderId: z.string(), customerId: z.string() });

/**
 * Reminds a customer to pay an order whose card was declined an hour ago (process-order
 * schedules the reminder as a delayed event). Here a log line stands in for the email.
 */
export default defineFunction({
  schema: Reminder,
  async handler(reminder, ctx) {
    ctx.log.info({ customerId: reminder.customerId, orderId: reminder.orderId }, "reminded customer to pay");
  },
});
