/** The longest a message waits for its batch when the turn it was sent in runs long. */
const MAX_WAIT_MS = 0.25;

/** What a batch is posted through: a worker's port or the worker itself. */
interface Port {
  postMessage(value: unknown, transfer?: readonly ArrayBuffer[]): void;
}

/** One batch on the wire: the messages, and the bytes they point into. */
export interface Batch<T> {
  readonly m: T[];
  readonly b?: ArrayBuffer;
}

/** Where a message's bytes are in its batch's `b`: offset and length. */
export type BytesRef = readonly [offset: number, length: number];

/** The bytes `ref` points to in `batch`. */
export function bytesIn(batch: Batch<unknown>, ref: BytesRef): Uint8Array {
  return new Uint8Array(batch.b!, ref[0], ref[1]);
}

/**
 * Posts messages between threads in batches: everything sent during one turn of the event
 * loop goes as one `postMessage` on the next `setImmediate`. A message crossing threads
 * costs mostly the call, waking the other side and cloning, not its size; so one call per
 * turn instead of one per invocation takes most of the cost out of running a handler in a
 * worker thread. The delay is below a millisecond. Payloads ride in one buffer per batch:
 * each is copied into it once when the batch leaves, and the buffer is transferred, not
 * cloned.
 *
 * A thread that stops yielding (a handler in a sync loop) also stops its batch from
 * leaving: what finished in the same turn is reported late or not at all, and settles as
 * the stuck thread's invocations do.
 *
 * Every message must be cloneable: the sender checks what may carry a handler's values
 * (log fields, span attributes) before it sends them, so one bad value cannot lose a batch.
 */
export class BatchPort<T> {
  readonly #port: Port;
  #messages: T[] = [];
  #chunks: Uint8Array[] = [];
  #size = 0;
  #scheduled?: NodeJS.Immediate;
  /** When the oldest waiting message was sent. */
  #since = 0;

  constructor(port: Port) {
    this.#port = port;
  }

  /**
   * Queues `data` to travel with the next batch, and says where it will be. The bytes are
   * read when the batch leaves (this turn): the caller must not change them meanwhile.
   */
  bytes(data: Uint8Array): BytesRef {
    const ref: BytesRef = [this.#size, data.byteLength];
    this.#chunks.push(data);
    this.#size += data.byteLength;
    return ref;
  }

  send(message: T): void {
    this.#messages.push(message);
    if (this.#messages.length === 1) {
      this.#since = performance.now();
      this.#scheduled ??= setImmediate(() => this.flush());
    } else if (performance.now() - this.#since > MAX_WAIT_MS) {
      // A long turn (a big pull being dispatched) must not hold the first ones back.
      this.flush();
    }
  }

  /** Posts what is waiting now. */
  flush(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    if (this.#messages.length === 0) return;
    const batch: Batch<T> = { m: this.#messages };
    this.#messages = [];
    if (this.#size > 0) {
      const arena = new Uint8Array(this.#size);
      let at = 0;
      for (const chunk of this.#chunks) {
        arena.set(chunk, at);
        at += chunk.byteLength;
      }
      this.#chunks = [];
      this.#size = 0;
      this.#port.postMessage({ ...batch, b: arena.buffer }, [arena.buffer]);
    } else {
      this.#port.postMessage(batch);
    }
  }
}
