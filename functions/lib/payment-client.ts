/**
 * A simulated payment gateway, standing in for the HTTP API a real function would call.
 * It takes 5-25 ms, fails with a transient error at `failureRate`, and declines amounts
 * above `declineAbove` (a permanent failure). Like a real gateway, it answers a second
 * charge with the same `idempotencyKey` with the first one's receipt, charging once.
 */
export interface ChargeRequest {
  orderId: string;
  amount: number;
  currency: string;
}

export interface Receipt {
  id: string;
  declined: boolean;
}

export class PaymentUnavailableError extends Error {
  override readonly name = "PaymentUnavailableError";
}

export interface PaymentClientOptions {
  /** Share of calls failing with a transient error, 0..1. @default 0 */
  failureRate?: number;
  /** Amounts above this are declined. @default 10000 */
  declineAbove?: number;
}

/** How a charge is made. */
export interface ChargeOptions {
  signal: AbortSignal;
  /** The same key twice charges once: the second call gets the first one's receipt. */
  idempotencyKey?: string;
}

export class PaymentClient {
  readonly #failureRate: number;
  readonly #declineAbove: number;
  /** Receipts by idempotency key, as the gateway would keep them. */
  readonly #charged = new Map<string, Receipt>();
  /** Charges made (not the ones answered by idempotency key). */
  charges = 0;

  constructor(options: PaymentClientOptions = {}) {
    this.#failureRate = options.failureRate ?? 0;
    this.#declineAbove = options.declineAbove ?? 10_000;
  }

  async charge(request: ChargeRequest, { signal, idempotencyKey }: ChargeOptions): Promise<Receipt> {
    const earlier = idempotencyKey === undefined ? undefined : this.#charged.get(idempotencyKey);
    if (earlier) return earlier;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, 5 + Math.random() * 20);
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          reject(signal.reason);
        },
        { once: true },
      );
    });
    if (Math.random() < this.#failureRate) throw new PaymentUnavailableError("payment gateway unavailable (simulated)");
    const receipt = { id: `rcpt_${request.orderId}_${Date.now().toString(36)}`, declined: request.amount > this.#declineAbove };
    this.charges++;
    if (idempotencyKey !== undefined) this.#charged.set(idempotencyKey, receipt);
    return receipt;
  }
}
