import { type Context, type Span, SpanStatusCode } from "@opentelemetry/api";
import { encode } from "../codec/codec.ts";
import type { CompiledFunction, CompiledRetry } from "../config/types.ts";
import type { BrokerPublisher } from "../contracts/broker.ts";
import { DeadLetterHeader, isOwnHeader } from "../contracts/dead-letter.ts";
import type { Delivery } from "../contracts/delivery.ts";
import { errorMessage } from "../contracts/error-message.ts";
import type { Outcome, Settlement } from "../contracts/outcome.ts";
import { formatReplayOf, ReplayHeader } from "../contracts/replay.ts";
import { backoffDelay } from "../resilience/backoff.ts";
import { BROKER_RETRY, retryInPlace } from "../resilience/retry-in-place.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { FunctionMeters, Metrics } from "../telemetry/metrics.ts";
import { traceFields } from "../telemetry/trace-fields.ts";
import { tracedPublish } from "../telemetry/traced-publish.ts";
import type { BrokerWait, BrokerWaits } from "./broker-hold.ts";
import { Heartbeats } from "./heartbeats.ts";
import { settle } from "./outcome-table.ts";

/** Trace context headers: each publish of ours sets them anew. */
const TRACE_CONTEXT = /^(traceparent|tracestate)$/i;

/** Room kept for an output's headers (Nats-Msg-Id, traceparent, tracestate). */
const HEADER_ALLOWANCE = 512;

/** Never aborts: without a stop signal a wait for the broker lasts until the broker takes the publish. */
const NEVER = new AbortController().signal;
/** Without an admission to tell, waits for the broker hold nothing. */
const NO_WAITS: BrokerWaits = { waitForBroker: () => ({ refused() {}, end() {} }) };

/** The `Nats-Msg-Id` of a delivery's output: a redelivery's publish of it lands once. */
export function outputMsgId(fn: string, delivery: Pick<Delivery, "stream" | "seq">): string {
  return `${fn}:${delivery.stream}:${delivery.seq}`;
}

/** One delivery on its way to settlement. */
export interface Settling {
  readonly delivery: Delivery;
  /** The delivery's attempt, 1-based (see AttemptLedger). */
  readonly attempt: number;
  readonly outcome: Outcome;
  readonly span: Span;
  /** The delivery's trace context: the parent of output and dead-letter publishes. */
  readonly context: Context;
  /** Set while a breaker the delivery went through is open: milliseconds until it lets probes through. */
  readonly breakerOpenMs?: number;
  /** Writes the run's completion record: after the output is published, before the ack (a run that used `ctx.step`). */
  readonly complete?: () => Promise<void>;
}

/** How a wait for the broker is bounded and told (see {@link Settler}). */
export interface SettlerOptions {
  /**
   * Aborts when shutdown's grace period is over: a publish still waiting for the broker
   * gives up, and its delivery is nak'd with no delay, its attempt spared.
   */
  readonly stop?: AbortSignal;
  /** Told while a publish waits for the broker: the function's admission, which pulls nothing meanwhile. */
  readonly waits?: BrokerWaits;
  /**
   * Between tries of a publish the broker refused; past `maxAttempts` tries the wait gives
   * up as shutdown ends it (`jetfn/testing` tries a few times only).
   * @default BROKER_RETRY: 200 ms doubling to 5 s, jittered, without end
   */
  readonly retry?: CompiledRetry;
  /** The function's heartbeats, which keep a delivery whose publish waits alive. @default its own */
  readonly heartbeats?: Heartbeats;
}

/**
 * What the settler did: the settlement it carried out, and for a nak, whether the nak
 * spends none of the message's attempts (`spared`: the broker, not the handler, kept it
 * from settling) or was not sent at all (`unsent`: the delivery was revoked meanwhile).
 */
export type Settled = Settlement & { readonly spared?: true; readonly unsent?: true };

/** How a publish that may wait for the broker ended. */
type Taken =
  | { readonly taken: true }
  | { readonly taken: false; readonly own: string }
  | { readonly taken: false; readonly settled: Settled };

const TAKEN: Taken = Object.freeze({ taken: true });

/**
 * Carries out the settlement `settle()` decides: publishes the output or the dead letter
 * first, then sends exactly one ack, nak or term.
 *
 * A publish the broker refuses (storage full, a timeout, no responders, disconnected)
 * is the broker's failure, not the handler's: the settler keeps the settlement decided
 * and tries the same publish again in place (same `Nats-Msg-Id`, so it lands once), with
 * a backoff of its own and `working()` every half ack wait so the message is not
 * redelivered meanwhile, until the broker takes it, however long that takes. The handler
 * does not run again, and no attempt is spent. Meanwhile the function's admission holds
 * its pulls. Only shutdown (after its grace) ends the wait, with a nak that spends no
 * attempt; a revoked delivery ends it with nothing sent.
 */
export class Settler {
  readonly #fn: CompiledFunction;
  readonly #publisher: BrokerPublisher;
  readonly #metrics: Metrics;
  readonly #meters: FunctionMeters;
  readonly #log: Logger;
  readonly #random?: () => number;
  readonly #stop: AbortSignal;
  readonly #waits: BrokerWaits;
  readonly #retry: CompiledRetry;
  /** Keeps the deliveries whose publish waits for the broker from being redelivered. */
  readonly #heartbeats: Heartbeats;

  constructor(
    fn: CompiledFunction,
    publisher: BrokerPublisher,
    metrics: Metrics,
    log: Logger,
    random?: () => number,
    options: SettlerOptions = {},
  ) {
    this.#fn = fn;
    this.#publisher = publisher;
    this.#metrics = metrics;
    this.#meters = metrics.forFunction(fn.name);
    this.#log = log;
    this.#random = random;
    this.#stop = options.stop ?? NEVER;
    this.#waits = options.waits ?? NO_WAITS;
    this.#retry = options.retry ?? BROKER_RETRY;
    this.#heartbeats = options.heartbeats ?? Heartbeats.forAckWait(fn.ackWaitMs);
  }

  async settle(item: Settling): Promise<Settled> {
    const { delivery, outcome } = item;
    const fn = this.#fn;
    let settlement: Settled = settle(outcome, item.attempt, fn.retry, this.#random, item.breakerOpenMs);
    if (settlement.action === "ack" && fn.output && settlement.output !== undefined) {
      settlement = await this.#publishOutput(item, fn.output, settlement.output);
    }
    if (settlement.action === "dead-letter") settlement = await this.#deadLetter(item, settlement);
    if (settlement.unsent || delivery.revoked?.aborted) return this.#unsent(item, settlement);
    if (settlement.action === "ack" && item.complete) await item.complete();
    switch (settlement.action) {
      case "ack":
        delivery.ack();
        break;
      case "nak":
        delivery.nak(settlement.delayMs);
        break;
      case "dead-letter":
        delivery.term();
        this.#metrics.deadLetters.inc({ function: fn.name, reason: settlement.reason });
        this.#meters.deadLettered++;
        break;
    }
    this.#meters.acks[settlement.action === "dead-letter" ? "term" : settlement.action]++;
    item.span.setAttribute("jetfn.settlement", settlement.action);
    if ((outcome.kind !== "success" && outcome.kind !== "duplicate") || settlement.action !== "ack") {
      item.span.setStatus({ code: SpanStatusCode.ERROR, message: settlementError(settlement) });
      this.#logFailure(item, settlement);
    }
    return settlement;
  }

  async #publishOutput(item: Settling, subject: string, value: unknown): Promise<Settled> {
    const { delivery } = item;
    let data: Uint8Array;
    try {
      data = encode(value);
    } catch (error) {
      // A return value that cannot be encoded is the handler's failure, retried like one.
      return settle({ kind: "error", error }, item.attempt, this.#fn.retry, this.#random, item.breakerOpenMs);
    }
    const maxPayload = this.#publisher.maxPayload;
    if (data.length > maxPayload - HEADER_ALLOWANCE) {
      // Retrying cannot shrink it: the server would refuse every publish of it.
      const error = `output of ${data.length} bytes exceeds the server's max_payload (${maxPayload} bytes, headers included)`;
      return { action: "dead-letter", reason: "non-retryable", error };
    }
    // An idempotency key's duplicate publishes the first run's output under the first run's id.
    const msgId =
      item.outcome.kind === "duplicate" && item.outcome.output ? item.outcome.output.msgId : outputMsgId(this.#fn.name, delivery);
    const published = await this.#untilTaken(item, `output publish to ${subject}`, () =>
      tracedPublish(this.#publisher, item.context, subject, data, {}, msgId),
    );
    if (published.taken) return { action: "ack", output: value };
    // Refused for its own sake (the stream's max_msg_size): retrying cannot shrink it.
    if ("own" in published) return { action: "dead-letter", reason: "non-retryable", error: published.own };
    return published.settled;
  }

  async #deadLetter(item: Settling, settlement: Extract<Settlement, { action: "dead-letter" }>): Promise<Settled> {
    const { delivery } = item;
    const fn = this.#fn;
    const headers: Record<string, string> = {
      // The message's own headers travel with it (a redrive sends them back out), but not
      // the server's Nats-* ones (an expectation would fail this publish) or the trace
      // context, which the publish sets anew.
      ...Object.fromEntries(Object.entries(delivery.headers).filter(([key]) => !isOwnHeader(key) && !TRACE_CONTEXT.test(key))),
      [DeadLetterHeader.Function]: fn.name,
      [DeadLetterHeader.Subject]: delivery.subject,
      [DeadLetterHeader.Stream]: delivery.stream,
      [DeadLetterHeader.StreamSeq]: String(delivery.seq),
      [DeadLetterHeader.Deliveries]: String(delivery.deliveryCount),
      [DeadLetterHeader.Error]: settlement.error,
      [DeadLetterHeader.Reason]: settlement.reason,
      [DeadLetterHeader.FailedAt]: new Date().toISOString(),
      // A replay's copy that failed says which event it was a copy of (its Jetfn-Stream is
      // JETFN_REPLAY): `dlq redrive --only` sends it back as a replay of that event.
      ...(delivery.replayOf ? { [ReplayHeader.Of]: formatReplayOf(delivery.replayOf) } : {}),
    };
    // The original bytes, never a re-serialisation; the id makes a redelivered dead
    // letter (its term lost) land once.
    const msgId = `dlq:${fn.name}:${delivery.stream}:${delivery.seq}`;
    const published = await this.#untilTaken(item, `dead-letter publish to ${fn.deadLetter}`, () =>
      tracedPublish(this.#publisher, item.context, fn.deadLetter, delivery.data, headers, msgId),
    );
    if (published.taken) return settlement;
    // Refused for its own sake (the dead-letter stream's max_msg_size): never dropped, so
    // it comes back with backoff, as any failure of the handler would.
    if ("own" in published) return { action: "nak", delayMs: backoffDelay(fn.retry, item.attempt, this.#random), error: published.own };
    return published.settled;
  }

  /**
   * Publishes until the broker takes it (see the class comment). Each refusal counts in
   * `jetfn_output_failures_total`; from the first, the delivery is heartbeated and the
   * function's admission holds its pulls, until the wait ends.
   */
  async #untilTaken(item: Settling, what: string, publish: () => Promise<unknown>): Promise<Taken> {
    const { delivery } = item;
    // Revoked before anything was sent: send nothing at all.
    if (delivery.revoked?.aborted)
      return { taken: false, settled: { action: "nak", delayMs: 0, error: `${what} not attempted`, unsent: true } };
    // The first try on its own: nearly every publish is taken at once, and the retry's
    // closures and listeners cost a measurable share of an echo's CPU.
    try {
      await publish();
      return TAKEN;
    } catch (error) {
      return this.#retryRefused(item, what, publish, error);
    }
  }

  /** {@link #untilTaken} after its first try failed with `first`. */
  async #retryRefused(item: Settling, what: string, publish: () => Promise<unknown>, first: unknown): Promise<Taken> {
    const { delivery } = item;
    const fn = this.#fn;
    let replayFirst = true;
    let wait: BrokerWait | undefined;
    let stopBeating: (() => void) | undefined;
    const beat = (): void => {
      delivery.working();
      this.#meters.acks.working++;
    };
    try {
      const end = await retryInPlace(
        async () => {
          // The failure of the first try, made above, is the retry's first failure.
          if (replayFirst) {
            replayFirst = false;
            throw first;
          }
          // Revoked while it waited: nothing more may be sent (the signal ends the wait too).
          if (delivery.revoked?.aborted) throw new RevokedError();
          return publish();
        },
        {
          policy: this.#retry,
          signals: delivery.revoked ? [this.#stop, delivery.revoked] : [this.#stop],
          ...(this.#random ? { random: this.#random } : {}),
          transient: (error) => error instanceof RevokedError || this.#publisher.failureOf(error) !== undefined,
          onFailure: (error) => {
            if (error instanceof RevokedError) return;
            const reason = this.#publisher.failureOf(error)!;
            this.#metrics.outputFailures.inc({ function: fn.name, reason });
            if (wait) {
              wait.refused(reason);
              return;
            }
            wait = this.#waits.waitForBroker(reason);
            // The handler's run may have used most of the ack wait already: beat now, then
            // every half ack wait.
            beat();
            stopBeating = this.#heartbeats.add(beat);
          },
        },
      );
      if (end.ok) return TAKEN;
      const error = `${what} failed: ${errorMessage(end.error)}`;
      if (end.ended === "permanent") {
        this.#metrics.outputFailures.inc({ function: fn.name, reason: "too-large" });
        return { taken: false, own: error };
      }
      if (delivery.revoked?.aborted) return { taken: false, settled: { action: "nak", delayMs: 0, error, unsent: true } };
      const why =
        end.ended === "aborted"
          ? `shutdown ended the wait for the broker after ${end.failures} tries`
          : `gave up waiting for the broker after ${end.failures} tries`;
      // Another replica takes it at once; the handler's attempt is not counted.
      return { taken: false, settled: { action: "nak", delayMs: 0, error: `${error}; ${why}`, spared: true } };
    } finally {
      stopBeating?.();
      wait?.end();
    }
  }

  /** The delivery was revoked (see `Delivery.revoked`): nothing of it is sent. */
  #unsent(item: Settling, settlement: Settled): Settled {
    item.span.setAttribute("jetfn.settlement", "none");
    const error = settlement.action === "ack" ? "revoked before its ack was sent" : settlement.error;
    return { action: "nak", delayMs: 0, error, unsent: true };
  }

  /** The one log line of a failed delivery. Never the payload. */
  #logFailure({ delivery, outcome, span }: Settling, settlement: Settled): void {
    this.#log.warn(
      {
        subject: delivery.subject,
        seq: delivery.seq,
        delivery_count: delivery.deliveryCount,
        ...(delivery.replayOf ? { replay_of: formatReplayOf(delivery.replayOf) } : {}),
        ...traceFields(span),
        outcome: outcome.kind,
        action: settlement.action,
        ...(settlement.action === "nak" ? { delay_ms: settlement.delayMs, ...(settlement.spared ? { attempt_spared: true } : {}) } : {}),
        ...(settlement.action === "dead-letter" ? { reason: settlement.reason, dead_letter: this.#fn.deadLetter } : {}),
        error: settlementError(settlement),
        // Source maps make this point at the handler's own .ts lines.
        ...(outcome.kind === "error" && outcome.error instanceof Error ? { stack: outcome.error.stack } : {}),
      },
      "delivery failed",
    );
  }
}

function settlementError(settlement: Settlement): string | undefined {
  return settlement.action === "ack" ? undefined : settlement.error;
}

/** Thrown in place of a publish once the delivery is revoked: ends the wait, sends nothing. */
class RevokedError extends Error {
  constructor() {
    super("the delivery was revoked");
  }
}
