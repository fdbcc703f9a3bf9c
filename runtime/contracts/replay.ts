import type { StreamPosition } from "../sdk/types.ts";
import { DeadLetterHeader } from "./dead-letter.ts";

/**
 * Replays (DESIGN.md, "Operations"): copies of past events sent to one function alone. A
 * copy goes to `jetfn.replay.<function>` in the `JETFN_REPLAY` stream, which each function
 * also consumes, and carries where its original is. Names users and scripts rely on.
 */
export const REPLAY_STREAM = "JETFN_REPLAY";
export const REPLAY_SUBJECTS = ["jetfn.replay.>"];

/**
 * How long `JETFN_REPLAY` remembers a copy's `Nats-Msg-Id`: the same replay run again
 * within it publishes nothing new. The server keeps every id of the window in memory.
 */
export const REPLAY_DUPLICATE_WINDOW_MS = 24 * 60 * 60 * 1000;

export const ReplayHeader = Object.freeze({
  /** `<stream>:<seq>` of the original event. */
  Of: "Jetfn-Replay-Of",
  /** The original event's subject: what the handler sees as `ctx.subject`. */
  Subject: DeadLetterHeader.Subject,
});

/** The subject a function's replays are sent to. */
export function replaySubject(fn: string): string {
  return `jetfn.replay.${fn}`;
}

export function formatReplayOf(of: StreamPosition): string {
  return `${of.stream}:${of.seq}`;
}

/** `ORDERS:42` -> `{ stream: "ORDERS", seq: 42 }`; undefined for anything else. */
export function parseReplayOf(text: string | undefined): StreamPosition | undefined {
  const match = /^(.+):([1-9][0-9]*)$/.exec(text ?? "");
  return match ? { stream: match[1]!, seq: Number(match[2]) } : undefined;
}

/**
 * The `Nats-Msg-Id` of a replay's copy: the same event replayed to the same function again
 * (an interrupted replay run again) is one copy. A `key` makes a replay of its own, for
 * running the same events once more within the duplicate window.
 */
export function replayMsgId(fn: string, of: StreamPosition, key?: string): string {
  return `replay:${fn}:${key ? `${key}:` : ""}${formatReplayOf(of)}`;
}
