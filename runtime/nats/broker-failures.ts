import { JetStreamApiError } from "@nats-io/jetstream";
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  InvalidArgumentError,
  InvalidSubjectError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import type { BrokerFailure } from "../contracts/broker.ts";

/**
 * JetStream API error codes (`err_code`) of a store that refused a message for room:
 * 10023 "insufficient resources" (the server's `max_file_store`/`max_memory_store` reached,
 * what a full store answers a publish), 10047 and 10028 (storage or memory resources
 * exceeded), 10077 (the stream's store failed it: "maximum messages/bytes exceeded" of a
 * stream with `discard: new`).
 */
const STORAGE_FULL = new Set([10023, 10028, 10047, 10077]);
/** 10054 "message size exceeds maximum allowed": the stream's max_msg_size; no retry shrinks it. */
const MESSAGE_TOO_LARGE = 10054;

/**
 * Why the broker did not take a publish that failed with `error` (see {@link BrokerFailure}),
 * read from the client's typed errors; undefined when the message itself is at fault.
 *
 * @param connected whether the host's connection is up now: a request that timed out
 *   while it was down failed for that.
 */
export function brokerFailureOf(error: unknown, connected: boolean): BrokerFailure | undefined {
  if (error instanceof JetStreamApiError) {
    if (error.code === MESSAGE_TOO_LARGE) return undefined;
    return STORAGE_FULL.has(error.code) ? "storage-full" : "refused";
  }
  // The client checks max_payload (and the subject) before sending.
  if (error instanceof InvalidArgumentError || error instanceof InvalidSubjectError) return undefined;
  if (error instanceof ClosedConnectionError || error instanceof DrainingConnectionError || error instanceof ConnectionError) {
    return "disconnected";
  }
  if (error instanceof TimeoutError) return connected ? "timeout" : "disconnected";
  // A publish with no stream behind its subject is a request nobody answers; the
  // JetStream client wraps that (JetStreamNotEnabled, with the RequestError as its cause).
  for (let cause: unknown = error, depth = 0; cause instanceof Error && depth < 4; cause = cause.cause, depth++) {
    if (cause instanceof NoRespondersError || (cause instanceof RequestError && cause.isNoResponders())) return "no-responders";
    if (cause instanceof TimeoutError) return connected ? "timeout" : "disconnected";
  }
  return "refused";
}

/**
 * A stream jetfn made itself and just found (an ordered function's `JETFN_ORDERED_<function>`)
 * answered "not found": seen while a cluster elects after a node's fault. Waited out as
 * JetStream being unavailable, never taken for a configuration error.
 */
export class StreamElecting extends Error {}

/** JetStream's answer when it has no meta leader (an election under way, a node cut off from its cluster). */
const JETSTREAM_UNAVAILABLE = 10008;

/**
 * Whether `error` says JetStream cannot answer for now, rather than that the request was
 * wrong: "temporarily unavailable" (no meta leader), or a timeout. What a host starting
 * during an election waits out. No responders is not: that is a server without JetStream.
 */
export function isJetStreamUnavailable(error: unknown): boolean {
  for (let cause: unknown = error, depth = 0; cause instanceof Error && depth < 4; cause = cause.cause, depth++) {
    if (cause instanceof StreamElecting) return true;
    if (cause instanceof JetStreamApiError) return cause.code === JETSTREAM_UNAVAILABLE;
    if (cause instanceof TimeoutError) return true;
  }
  return false;
}
