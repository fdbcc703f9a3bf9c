import type { BrokerFailure, BrokerHoldStatus } from "../contracts/broker.ts";

/** One delivery's publish waiting for the broker, as the settler holds it. */
export interface BrokerWait {
  /** The broker refused it again, for `reason`. */
  refused(reason: BrokerFailure): void;
  /** The wait is over (the broker took it, or the wait was cut off). Idempotent. */
  end(): void;
}

/** Where the settler says that a publish of a delivery's output or dead letter waits for the broker. */
export interface BrokerWaits {
  /** A publish was refused for `reason` and will be tried again in place: the wait starts. */
  waitForBroker(reason: BrokerFailure): BrokerWait;
}

/**
 * Whether any of a function's deliveries waits for the broker to take its output or dead
 * letter, and since when. Held from the first wait's start to the last one's end; tells
 * `onChange` when that starts (true) and ends (false).
 */
export class BrokerHold implements BrokerWaits {
  readonly #now: () => number;
  readonly #onChange: (held: boolean) => void;
  #waiting = 0;
  #since = 0;
  #reason: BrokerFailure = "refused";

  constructor(now: () => number, onChange: (held: boolean) => void) {
    this.#now = now;
    this.#onChange = onChange;
  }

  /** True while a publish waits for the broker. */
  get held(): boolean {
    return this.#waiting > 0;
  }

  /** Why and since when it is held, and how many wait; undefined while not held. */
  get status(): BrokerHoldStatus | undefined {
    if (this.#waiting === 0) return undefined;
    return { reason: this.#reason, since: new Date(this.#since).toISOString(), waiting: this.#waiting };
  }

  waitForBroker(reason: BrokerFailure): BrokerWait {
    this.#reason = reason;
    if (this.#waiting++ === 0) {
      this.#since = this.#now();
      this.#onChange(true);
    }
    let ended = false;
    return {
      refused: (again) => {
        if (!ended) this.#reason = again;
      },
      end: () => {
        if (ended) return;
        ended = true;
        if (--this.#waiting === 0) this.#onChange(false);
      },
    };
  }
}
