import type { DelayedFailureReason } from "../contracts/delayed.ts";
import { backoffDelay } from "../resilience/backoff.ts";
import { BROKER_RETRY } from "../resilience/retry-in-place.ts";

/** The events of one target that wait for it to take them again. */
interface Parked<T> {
  readonly events: T[];
  failures: number;
  reason: DelayedFailureReason;
  /** When the first of them may be tried again (epoch ms). */
  nextTryAt: number;
}

/**
 * Due delayed events whose target refused them (no stream captures it, a full store, no
 * answer): kept, per target and in order, and tried again in place with the broker's
 * backoff (200 ms doubling to 5 s, jittered), one event first, the rest once it passes. A
 * target that refuses never makes the mover spin, and never holds up the others. Pure: the
 * clock and randomness are the caller's.
 */
export class ParkedTargets<T> {
  readonly #targets = new Map<string, Parked<T>>();
  readonly #random: () => number;

  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  /** Whether events of `target` wait: a new one joins them rather than being tried on its own. */
  has(target: string): boolean {
    return this.#targets.has(target);
  }

  /** Events waiting, over every target. */
  get size(): number {
    let size = 0;
    for (const parked of this.#targets.values()) size += parked.events.length;
    return size;
  }

  /**
   * Keeps `event`, which `target` refused for `reason`, or which is queued behind the
   * target's earlier ones. Only the first refusal of a target sets its next try: events that
   * were in flight together fail together, and count as one refusal.
   */
  park(target: string, event: T, reason: DelayedFailureReason, now: number): void {
    const parked = this.#targets.get(target);
    if (parked !== undefined) {
      parked.events.push(event);
      return;
    }
    const fresh: Parked<T> = { events: [event], failures: 0, reason, nextTryAt: now };
    this.#targets.set(target, fresh);
    this.#failed(fresh, reason, now);
  }

  /** The targets whose next try has come, each with its first event (the one to try). */
  due(now: number): { target: string; event: T }[] {
    const due: { target: string; event: T }[] = [];
    for (const [target, parked] of this.#targets) {
      if (parked.nextTryAt <= now && parked.events.length > 0) due.push({ target, event: parked.events[0]! });
    }
    return due;
  }

  /** The try of `target`'s first event passed: every event of it, the tried one first, to deliver now. */
  passed(target: string): T[] {
    const parked = this.#targets.get(target);
    this.#targets.delete(target);
    return parked?.events ?? [];
  }

  /** The try of `target`'s first event failed again. */
  failedAgain(target: string, reason: DelayedFailureReason, now: number): void {
    const parked = this.#targets.get(target);
    if (parked !== undefined) this.#failed(parked, reason, now);
  }

  /** When the next try is due (epoch ms), or undefined with nothing parked. */
  nextTryAt(): number | undefined {
    let next: number | undefined;
    for (const parked of this.#targets.values()) next = next === undefined ? parked.nextTryAt : Math.min(next, parked.nextTryAt);
    return next;
  }

  /** Why each target refused last, and how many of its events wait. */
  reasons(): Map<string, { reason: DelayedFailureReason; waiting: number }> {
    return new Map([...this.#targets].map(([target, p]) => [target, { reason: p.reason, waiting: p.events.length }]));
  }

  /** Forgets everything (the mover lost its lease: the next one reads the events again). */
  clear(): T[] {
    const all = [...this.#targets.values()].flatMap((p) => p.events);
    this.#targets.clear();
    return all;
  }

  #failed(parked: Parked<T>, reason: DelayedFailureReason, now: number): void {
    parked.failures++;
    parked.reason = reason;
    parked.nextTryAt = now + backoffDelay(BROKER_RETRY, parked.failures, this.#random);
  }
}
