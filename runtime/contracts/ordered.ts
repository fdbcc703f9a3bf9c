import { DelegatingDelivery, type Delivery } from "./delivery.ts";

/**
 * Forwarded ordering (docs/ordering.md, "Design"): an ordered function with more than one
 * partition reads its stream once, through its own durable, and forwards each event to its
 * partition's subject `jetfn.ordered.<function>.<partition>` in the function's work-queue
 * stream `JETFN_ORDERED_<function>`. Each partition's durable reads only its own subject, so
 * the broker delivers an event twice whatever the partition count. Names users and scripts
 * rely on.
 */
export const ORDERED_STREAM_PREFIX = "JETFN_ORDERED_";

/** Whether `fn` is an ordered function whose events are forwarded to partition subjects (two partitions or more). */
export function forwardsOrdered(fn: { readonly ordering?: { readonly partitions: number } }): boolean {
  return (fn.ordering?.partitions ?? 0) > 1;
}

/** The work-queue stream an ordered function's events are forwarded to. */
export function orderedStream(fn: string): string {
  return `${ORDERED_STREAM_PREFIX}${fn}`;
}

/** The subject of one partition's forwarded events. */
export function orderedSubject(fn: string, partition: number): string {
  return `jetfn.ordered.${fn}.${partition}`;
}

/** Every partition subject of a function. */
export function orderedSubjects(fn: string): string {
  return `jetfn.ordered.${fn}.*`;
}

/** What a forwarded copy carries of its original, besides its data and other headers. */
export const OrderedHeader = Object.freeze({
  /** The original's subject: what the handler sees as `ctx.subject`. */
  Subject: "Jetfn-Ordered-Subject",
  /** The original's stream and sequence: the event's id, as for any function. */
  Stream: "Jetfn-Ordered-Stream",
  Seq: "Jetfn-Ordered-Seq",
  /** When the original was stored (epoch ms). */
  Time: "Jetfn-Ordered-Time",
  /** Prefixed to an original header that must not travel as it is (see {@link escapeName}). */
  Escaped: "Jetfn-Ordered-Orig-",
});

const OWN_PREFIX = "jetfn-ordered-";
const ESCAPED_LOWER = OrderedHeader.Escaped.toLowerCase();

/**
 * An original header's name on the copy. `Nats-*` are the server's (an original's
 * `Nats-Msg-Id` would dedupe the copy), and `Jetfn-Ordered-*` the copy's own: both travel
 * prefixed with `Jetfn-Ordered-Orig-`, and `Nats-` as `Nats_`, because the server finds a
 * header by the first mention of its name anywhere in the block.
 */
export function escapeName(name: string): string {
  const lower = name.toLowerCase();
  if (lower.startsWith("nats-")) return `${OrderedHeader.Escaped}${name.slice(0, 4)}_${name.slice(5)}`;
  return lower.startsWith(OWN_PREFIX) ? OrderedHeader.Escaped + name : name;
}

/** The original's name of an escaped header (without its prefix). */
function unescapeName(escaped: string): string {
  return /^nats_/i.test(escaped) ? `${escaped.slice(0, 4)}-${escaped.slice(5)}` : escaped;
}

/**
 * A forwarded copy as its function sees it: the original's subject, headers, stream,
 * sequence and time. Delivery count and settlement are the copy's: its retries happen in
 * the partition's durable.
 */
export function forwarded(copy: Delivery): Delivery {
  const headers = Object.create(null) as Record<string, string>;
  let subject = copy.subject;
  let stream = copy.stream;
  let seq = copy.seq;
  let time = Number.NaN;
  for (const name in copy.headers) {
    const value = copy.headers[name]!;
    const lower = name.toLowerCase();
    if (!lower.startsWith(OWN_PREFIX)) {
      // The copy's own (`Nats-Msg-Id`, `Nats-Expected-Last-Sequence`): the original's are escaped.
      if (!lower.startsWith("nats-")) headers[name] = value;
    } else if (lower.startsWith(ESCAPED_LOWER)) headers[unescapeName(name.slice(ESCAPED_LOWER.length))] = value;
    else if (lower === "jetfn-ordered-subject") subject = value;
    else if (lower === "jetfn-ordered-stream") stream = value;
    else if (lower === "jetfn-ordered-seq") seq = Number(value);
    else if (lower === "jetfn-ordered-time") time = Number(value);
  }
  return new ForwardedDelivery(copy, { headers, subject, stream, seq, timestamp: Number.isFinite(time) ? new Date(time) : copy.timestamp });
}

interface Original {
  readonly headers: Readonly<Record<string, string>>;
  readonly subject: string;
  readonly stream: string;
  readonly seq: number;
  readonly timestamp: Date;
}

class ForwardedDelivery extends DelegatingDelivery {
  readonly #original: Original;

  constructor(copy: Delivery, original: Original) {
    super(copy);
    this.#original = original;
  }

  override get headers(): Readonly<Record<string, string>> {
    return this.#original.headers;
  }
  override get subject(): string {
    return this.#original.subject;
  }
  override get stream(): string {
    return this.#original.stream;
  }
  override get seq(): number {
    return this.#original.seq;
  }
  override get timestamp(): Date {
    return this.#original.timestamp;
  }
}
