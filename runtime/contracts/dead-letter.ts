/**
 * The dead letter's headers (DESIGN.md, "Outcome table"): written when a delivery is
 * dead-lettered, read by `jetfn dlq`. Names users and scripts rely on.
 */
export const DeadLetterHeader = Object.freeze({
  Function: "Jetfn-Function",
  Subject: "Jetfn-Subject",
  Stream: "Jetfn-Stream",
  StreamSeq: "Jetfn-Stream-Seq",
  Deliveries: "Jetfn-Deliveries",
  Error: "Jetfn-Error",
  Reason: "Jetfn-Reason",
  FailedAt: "Jetfn-Failed-At",
});

/** A function's dead-letter subject when its entry sets no `deadLetter:`. */
export function defaultDeadLetter(functionName: string): string {
  return `jetfn.dlq.${functionName}`;
}

/**
 * The `Jetfn-Reason` values, which are also `jetfn_dead_letters_total{reason}`'s: why a
 * delivery was dead-lettered. `jetfn dlq list --reason` takes one of them. `step-too-large`
 * and `step-not-json`: a `ctx.step` ran but its result could not be recorded (over
 * `steps.maxResultSize`, or not JSON), so a retry would run its side effect again.
 */
export const DEAD_LETTER_REASONS = Object.freeze([
  "non-retryable",
  "attempts-exhausted",
  "undecodable",
  "invalid",
  "crashed",
  "step-too-large",
  "step-not-json",
] as const);

export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

const OWN = /^(jetfn-|nats-)/i;

/**
 * True for headers that belong to jetfn (`Jetfn-*`) or to the server and client
 * (`Nats-*`: message ids, expectations) rather than to the message itself. A dead letter
 * carries the failed message's other headers, and a redrive sends back exactly those.
 */
export function isOwnHeader(name: string): boolean {
  return OWN.test(name);
}
