import type { BrokerFailure, BrokerPublisher } from "../contracts/broker.ts";
import type { PublishAck } from "../sdk/types.ts";

/** The server's default `max_payload`: an output larger than this is dead-lettered, as on a default server. */
const MAX_PAYLOAD = 1024 * 1024;

const utf8 = new TextDecoder();

/** One message jetfn published for the delivery: by the handler (`ctx.publish`), its output, or its dead letter. */
export class PublishedMessage {
  constructor(
    readonly subject: string,
    /** The bytes as they would go out. */
    readonly data: Uint8Array,
    /** NATS headers (a dead letter's `Jetfn-*` ones, say); `Nats-Msg-Id` is in {@link msgId}. */
    readonly headers: Readonly<Record<string, string>>,
    /** `Nats-Msg-Id`: an output's is `<function>:<stream>:<seq>`. */
    readonly msgId?: string,
    /** A delayed publish (`delay` or `at`): when it is due, epoch ms. */
    readonly deliverAt?: number,
  ) {}

  /** The data as UTF-8 text. */
  text(): string {
    return utf8.decode(this.data);
  }

  /** The data parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

/**
 * Stands in for the host's JetStream publisher: keeps every publish, in order, and acks it.
 * `stub` sees each message first and may throw, as a server refusing it would: the
 * broker's failure (`refused`), which the host retries in place.
 */
export class CapturingPublisher implements BrokerPublisher {
  readonly maxPayload = MAX_PAYLOAD;
  readonly published: PublishedMessage[] = [];
  readonly #stub?: (message: PublishedMessage) => void | Promise<void>;

  constructor(stub?: (message: PublishedMessage) => void | Promise<void>) {
    this.#stub = stub;
  }

  async publish(
    subject: string,
    data: Uint8Array,
    options: { headers?: Record<string, string>; msgId?: string; deliverAt?: number } = {},
  ): Promise<PublishAck> {
    const message = new PublishedMessage(subject, data, { ...options.headers }, options.msgId, options.deliverAt);
    await this.#stub?.(message);
    this.published.push(message);
    return { stream: "TEST", seq: this.published.length, duplicate: false };
  }

  failureOf(): BrokerFailure {
    return "refused";
  }
}

/** One log line: pino's fields, without `time` and the constant `service`. */
export interface LogLine {
  readonly level: string;
  readonly msg?: string;
  readonly [field: string]: unknown;
}

/** A pino destination that keeps the lines, parsed. */
export class LogCapture {
  readonly lines: LogLine[] = [];

  write(line: string): void {
    const fields = JSON.parse(line) as Record<string, unknown>;
    delete fields.time;
    delete fields.service;
    this.lines.push(fields as LogLine);
  }
}
