import type { PublishAck, StreamPosition } from "../sdk/types.ts";

/**
 * One delivery of one message, as the invoke layer sees it. The nats layer adapts a
 * JetStream message to this, which keeps invoke/ free of client types and I/O of its own.
 * It and {@link Publisher} are the seam between nats/ and invoke/; neither imports the other.
 */
export interface Delivery {
  readonly data: Uint8Array;
  readonly subject: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly stream: string;
  readonly seq: number;
  readonly deliveryCount: number;
  readonly timestamp: Date;
  /**
   * Set for a replay's copy (from `JETFN_REPLAY`): where the original event is. Its
   * `subject` is then the original's; `stream` and `seq` are the copy's own.
   */
  readonly replayOf?: StreamPosition;
  /**
   * Aborts when this host may no longer settle the delivery: an ordered function lost the
   * lease of its partition, and another replica will run it. Its run is cut off, and
   * nothing of it (output, dead letter, ack, nak) is sent after this. Absent when nothing
   * can take the delivery away (unordered functions).
   */
  readonly revoked?: AbortSignal;
  /**
   * Whether the server gave this delivery up: its ack wait ran out with no ack nor heartbeat
   * (this host stalled: a SIGSTOP, a long pause), and the server delivers the message again,
   * here or to another replica. Such a delivery is not started, and nothing of it is settled.
   * Absent where the question does not arise (a call, a test's delivery).
   */
  expired?(): boolean;
  ack(): void;
  nak(delayMs: number): void;
  term(): void;
  working(): void;
}

/** Publishing as the host needs it: to JetStream, waiting for the PubAck. */
export interface Publisher {
  /** The server's max_payload: the largest message, headers included, it accepts. */
  readonly maxPayload: number;
  /** With `deliverAt` (epoch ms), the event is scheduled in `JETFN_DELAYED` for then, and the ack carries its id. */
  publish(
    subject: string,
    data: Uint8Array,
    options?: { headers?: Record<string, string>; msgId?: string; deliverAt?: number },
  ): Promise<PublishAck>;
}

/**
 * A delivery seen through another: every field and action passes to `inner`. Subclasses
 * change what they must (a replay's subject, a partition's fence).
 */
export class DelegatingDelivery implements Delivery {
  protected readonly inner: Delivery;

  constructor(inner: Delivery) {
    this.inner = inner;
  }

  get data(): Uint8Array {
    return this.inner.data;
  }
  get subject(): string {
    return this.inner.subject;
  }
  get headers(): Readonly<Record<string, string>> {
    return this.inner.headers;
  }
  get stream(): string {
    return this.inner.stream;
  }
  get seq(): number {
    return this.inner.seq;
  }
  get deliveryCount(): number {
    return this.inner.deliveryCount;
  }
  get timestamp(): Date {
    return this.inner.timestamp;
  }
  get replayOf(): StreamPosition | undefined {
    return this.inner.replayOf;
  }
  get revoked(): AbortSignal | undefined {
    return this.inner.revoked;
  }
  expired(): boolean {
    return this.inner.expired?.() ?? false;
  }
  ack(): void {
    this.inner.ack();
  }
  nak(delayMs: number): void {
    this.inner.nak(delayMs);
  }
  term(): void {
    this.inner.term();
  }
  working(): void {
    this.inner.working();
  }
}
