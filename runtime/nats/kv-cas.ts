import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";

/** A KV write that lost a race: its compare-and-set base was not the key's last revision. */
export function isConflict(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence || error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
