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

/**
 * Two consumptions as one: started (`main` first), interrupted, stopped and settled
 * together; released as `main` is. Bound when `main` is, or when both are with `bothBound`
 * (a loop that binds only when it has work, like the replays', is not waited for).
 * `status` adds to what `main` shows.
 */
export function consumedTogether(
  main: Consumption,
  extra: Consumption,
  options: { readonly bothBound?: boolean; readonly status?: () => Record<string, unknown> } = {},
): Consumption {
  return {
    get bound() {
      return main.bound && (!options.bothBound || extra.bound);
    },
    async start() {
      await main.start();
      await extra.start();
    },
    async stop() {
      await Promise.all([main.stop(), extra.stop()]);
    },
    async settled() {
      await Promise.all([main.settled(), extra.settled()]);
    },
    interrupt() {
      main.interrupt();
      extra.interrupt();
    },
    ...(main.release ? { release: () => main.release!() } : {}),
    status: () => ({ ...extra.status?.(), ...main.status?.(), ...options.status?.() }),
  };
}
