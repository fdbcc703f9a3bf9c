import type { CompiledFunction } from "../config/types.ts";
import type { FleetStatus } from "../contracts/status.ts";
import type { Logger } from "../telemetry/logger.ts";
import { fleetView } from "./fleet-view.ts";
import { FunctionHistory } from "./history.ts";
import type { FleetView } from "./view.ts";

export interface FleetFeedOptions {
  /** One poll of the fleet (`fleetStatus` over the console's connection). */
  readonly poll: () => Promise<FleetStatus>;
  readonly functions: readonly CompiledFunction[];
  readonly servers: string;
  readonly log: Logger;
  /** Time between polls. @default 2000 */
  readonly everyMs?: number;
  /** Chart buckets, and the window they cover. @default 10 s over 10 min */
  readonly stepMs?: number;
  readonly windowMs?: number;
}

/**
 * Polls the fleet every `everyMs` for as long as the console runs (the charts need every
 * poll, watched or not), keeps each function's history, and hands each new view to its
 * listeners (the server-sent event streams). One poll at a time; a failed poll is logged
 * and the last view stays.
 */
export class FleetFeed {
  readonly #options: FleetFeedOptions;
  readonly #histories = new Map<string, FunctionHistory>();
  readonly #listeners = new Set<(view: FleetView) => void>();
  readonly #stepMs: number;
  readonly #windowMs: number;
  #view?: FleetView;
  #timer?: NodeJS.Timeout;
  #polling?: Promise<FleetView | undefined>;
  #stopped = false;

  constructor(options: FleetFeedOptions) {
    this.#options = options;
    this.#stepMs = options.stepMs ?? 10_000;
    this.#windowMs = options.windowMs ?? 10 * 60_000;
  }

  /** Polls once (so the first page has data), then every `everyMs`. */
  async start(): Promise<void> {
    await this.refresh();
    const tick = (): void => {
      if (this.#stopped) return;
      void this.refresh().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#options.everyMs ?? 2000);
      });
    };
    this.#timer = setTimeout(tick, this.#options.everyMs ?? 2000);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** The last view; polls first when there is none yet. */
  async current(): Promise<FleetView | undefined> {
    return this.#view ?? (await this.refresh());
  }

  /** Polls now (joining a poll under way) and tells the listeners; after an action, the page sees its effect at once. */
  refresh(): Promise<FleetView | undefined> {
    this.#polling ??= this.#poll().finally(() => (this.#polling = undefined));
    return this.#polling;
  }

  /** Calls `listener` with every new view; returns the unsubscribe. */
  subscribe(listener: (view: FleetView) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #poll(): Promise<FleetView | undefined> {
    let status: FleetStatus;
    try {
      status = await this.#options.poll();
    } catch (error) {
      this.#options.log.warn({ err: error }, "polling the fleet failed");
      return this.#view;
    }
    const now = Date.now();
    for (const host of status.hosts) {
      for (const fn of host.functions) {
        if (!this.#histories.has(fn.name))
          this.#histories.set(fn.name, new FunctionHistory({ stepMs: this.#stepMs, windowMs: this.#windowMs }));
      }
    }
    for (const [name, history] of this.#histories) {
      const samples = status.hosts.flatMap((host) =>
        host.functions.filter((fn) => fn.name === name && fn.totals !== undefined).map((fn) => ({ instance: host.id, totals: fn.totals! })),
      );
      history.add(now, samples);
    }
    const view = fleetView(status, this.#options.functions, this.#histories, { servers: this.#options.servers, now, stepMs: this.#stepMs });
    this.#view = view;
    for (const listener of this.#listeners) listener(view);
    return view;
  }
}
