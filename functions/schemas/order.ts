import { z } from "zod";

/**
 * An order as `POST /orders` takes it (functions.yaml, `routes:`) and as `process-order`
 * reads it from `orders.created`: one schema, checked at the door and again by the function.
 */
export const Order = z.object({
  orderId: z.string().min(1),
  customerId: z.string().min(1),
  amount: z.number().positive(),
  currency: z.string().length(3).default("EUR"),
});

export type Order = z.infer<typeof Order>;
