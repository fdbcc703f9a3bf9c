import type { Delivery } from "../contracts/delivery.ts";
import type { Heartbeats } from "../invoke/heartbeats.ts";

/** How one run ended: done with (acked, dead-lettered), or back at the server to come again. */
export type RunResult = "settled" | "again";

/**
 * The function's concurrency, shared by the lanes of every partition this host owns: a slot
 * freed in one partition may start an event of another.
 */
export class Slots {
  readonly limit: number;
  used = 0;
  readonly #waiting = new Set<() => void>();

  constructor(limit: number) {
    this.limit = limit;
  }

  get free(): boolean {
    return this.used < this.limit;
  }

  /** `pump` runs whenever a slot frees. */
  onFree(pump: () => void): () => void {
    this.#waiting.add(pump);
    return () => this.#waiting.delete(pump);
  }

  release(): void {
    this.used--;
    for (const pump of this.#waiting) {
      if (!this.free) break;
      pump();
    }
  }
}

export interface KeyLanesOptions {
  /** Events running at once, across keys and partitions. */
  readonly slots: Slots;
  /** Runs one event to its settlement. Never rejects. */
  readonly run: (delivery: Delivery) => Promise<RunResult>;
  /** Whether events may start now (the partition is still this host's). */
  readonly mayStart: () => boolean;
  /** An event started, after waiting this long since it arrived. */
  readonly waited: (seconds: number) => void;
  /** Waiting events get `working()` through these, so their ack timers never run out. */
  readonly heartbeats: Heartbeats;
}

interface Entry {
  readonly seq: number;
  delivery: Delivery;
  state: "waiting" | "running" | "again";
  arrivedAt: number;
  /** Ends its heartbeats: set while it waits. */
  unbeat?: () => void;
  /** Resolves when this delivery object is finished with here (run, replaced or dropped). */
  readonly done: () => void;
  readonly finished: Promise<void>;
}

/** One key's events, in stream order; only the first may run. */
type Lane = Entry[];

/**
 * One partition's events, in one lane per key. A key's next event starts only after the one
 * before it settled (acked or dead-lettered); one that was handed back (a nak, to be retried
 * after its backoff) stays first in its lane, and its successors wait for its redelivery.
 * Different keys run in parallel up to the concurrency. Waiting events are kept alive with
 * heartbeats.
 */
export class KeyLanes {
  readonly #options: KeyLanesOptions;
  readonly #lanes = new Map<string, Lane>();
  readonly #bySeq = new Map<number, { key: string; entry: Entry }>();
  /** Lanes whose first event may run, oldest first. */
  readonly #ready = new Set<string>();
  readonly #unsubscribe: () => void;
  #running = 0;
  #idle?: { promise: Promise<void>; resolve: () => void };

  constructor(options: KeyLanesOptions) {
    this.#options = options;
    this.#unsubscribe = options.slots.onFree(() => this.pump());
  }

  /** Events held: waiting, running, or handed back and awaited. */
  get size(): number {
    return this.#bySeq.size;
  }

  get running(): number {
    return this.#running;
  }

  /**
   * Takes an event (or the redelivery of one held here) into its key's lane. Resolves when
   * this delivery is finished with here: it ran, or was replaced by a redelivery, or dropped.
   */
  add(key: string, delivery: Delivery): Promise<void> {
    const known = this.#bySeq.get(delivery.seq);
    if (known) {
      // A redelivery: it takes the place of the one held; a running one is left to finish.
      if (known.entry.state === "running") {
        return Promise.resolve();
      }
      const previous = known.entry;
      previous.unbeat?.();
      const entry = this.#entry(delivery);
      const lane = this.#lanes.get(known.key)!;
      lane[lane.indexOf(previous)] = entry;
      this.#bySeq.set(delivery.seq, { key: known.key, entry });
      previous.done();
      if (lane[0] === entry) this.#ready.add(known.key);
      this.pump();
      return entry.finished;
    }
    const entry = this.#entry(delivery);
    let lane = this.#lanes.get(key);
    if (!lane) {
      lane = [];
      this.#lanes.set(key, lane);
    }
    // Stream order: deliveries come in order, but a redelivery of an event this host had
    // dropped may come after later ones.
    let at = lane.length;
    while (at > 0 && lane[at - 1]!.seq > entry.seq) at--;
    lane.splice(at, 0, entry);
    this.#bySeq.set(entry.seq, { key, entry });
    if (at === 0) {
      if (lane.length > 1 && lane[1]!.state === "waiting") this.#ready.delete(key);
      this.#ready.add(key);
    }
    this.pump();
    return entry.finished;
  }

  /** Starts every first-in-lane event it may, while slots are free. */
  pump(): void {
    const { slots, mayStart } = this.#options;
    if (this.#ready.size === 0 || !slots.free || !mayStart()) return;
    for (const key of this.#ready) {
      if (!slots.free) break;
      this.#ready.delete(key);
      const lane = this.#lanes.get(key);
      const head = lane?.[0];
      // Never two of one key: a running event further back (an out-of-order redelivery) holds it too.
      if (head?.state === "waiting" && !lane!.some((entry) => entry.state === "running")) this.#start(key, head);
    }
  }

  /**
   * Lets go of every event not running (the partition was lost or handed over): they stay
   * un-acked on the server, for the next owner. Running ones finish and are then let go.
   */
  drop(): void {
    for (const [key, lane] of this.#lanes) {
      const kept = lane.filter((entry) => entry.state === "running");
      for (const entry of lane) {
        if (entry.state === "running") continue;
        entry.unbeat?.();
        this.#bySeq.delete(entry.seq);
        entry.done();
      }
      if (kept.length === 0) this.#lanes.delete(key);
      else this.#lanes.set(key, kept);
    }
    this.#ready.clear();
  }

  /** Resolves once nothing runs. */
  settled(): Promise<void> {
    if (this.#running === 0) return Promise.resolve();
    if (!this.#idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }

  close(): void {
    for (const { entry } of this.#bySeq.values()) entry.unbeat?.();
    this.#unsubscribe();
  }

  /** A new waiting entry, heartbeated until it starts or is let go. */
  #entry(delivery: Delivery): Entry {
    const entry = newEntry(delivery.seq, delivery);
    entry.unbeat = this.#options.heartbeats.add(() => entry.delivery.working());
    return entry;
  }

  #start(key: string, entry: Entry): void {
    entry.unbeat?.();
    entry.unbeat = undefined;
    entry.state = "running";
    this.#running++;
    this.#options.slots.used++;
    this.#options.waited((performance.now() - entry.arrivedAt) / 1000);
    void this.#options.run(entry.delivery).then((result) => this.#finished(key, entry, result));
  }

  #finished(key: string, entry: Entry, result: RunResult): void {
    this.#running--;
    const lane = this.#lanes.get(key);
    const stillHeld = this.#bySeq.get(entry.seq)?.entry === entry;
    if (result === "settled" || !stillHeld) {
      if (stillHeld) this.#bySeq.delete(entry.seq);
      if (lane) {
        const at = lane.indexOf(entry);
        if (at !== -1) lane.splice(at, 1);
        if (lane.length === 0) this.#lanes.delete(key);
        // Its head may be one that arrived while this ran, older in the stream (delivered again): it starts now.
        else if (lane[0]!.state === "waiting") this.#ready.add(key);
      }
    } else {
      // Handed back: it keeps its place, and its key waits for its redelivery.
      entry.state = "again";
    }
    entry.done();
    if (this.#running === 0 && this.#idle) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
    // Frees the slot and lets every partition's lanes (these included) start what is ready.
    this.#options.slots.release();
  }
}

function newEntry(seq: number, delivery: Delivery): Entry {
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  return { seq, delivery, state: "waiting", arrivedAt: performance.now(), done, finished };
}
