/**
 * Whether a function may take deliveries, as its pull loop asks it (the invoke layer's
 * admission answers). The seam between nats/ and invoke/, like `Delivery`.
 */
export interface Gate {
  /** Milliseconds until anything may start: 0 while the gate is open. */
  closedForMs(): number;
  /** How many deliveries may start now: unlimited, a few probes, or 0. */
  allowance(): number;
  /** True while only probes may start. */
  readonly probing: boolean;
  /** `listener` runs whenever the gate closes: open pulls should end early. Returns its removal. */
  onClose(listener: () => void): () => void;
  /**
   * `listener` runs when an operator's pause or the broker's hold (outputs refused) ends:
   * pulling may start at once. Returns its removal.
   */
  onOpen(listener: () => void): () => void;
}
