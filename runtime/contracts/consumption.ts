/**
 * How a function's messages come in, as the host drives it: one pull loop, an ordered
 * function's partitions, or either of those beside the function's replays.
 */
export interface Consumption {
  readonly bound: boolean;
  start(): void | Promise<void>;
  /** Stops pulling. */
  stop(): Promise<void>;
  /** Resolves when every delivery taken has settled. */
  settled(): Promise<void>;
  /** Ends open pulls early (a reconnect). */
  interrupt(): void;
  /** Hands over what this host holds for the function (an ordered function's leases). */
  release?(): Promise<void>;
  status?(): Record<string, unknown>;
}
