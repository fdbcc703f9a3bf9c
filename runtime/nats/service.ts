import { setTimeout as sleep } from "node:timers/promises";
import { Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import { Empty, headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { propagation, ROOT_CONTEXT, SpanKind } from "@opentelemetry/api";
import type { CompiledFunction } from "../config/types.ts";
import { CALL_STATUS, type CallResult, type SyncCaller } from "../contracts/call.ts";
import { JETFN_VERSION } from "../package-root.ts";
import type { Logger } from "../telemetry/logger.ts";

/** The NATS service every host runs: `$SRV.PING.jetfn`, `$SRV.INFO.jetfn`, `$SRV.STATS.jetfn`. */
export const SERVICE_NAME = "jetfn";

/** The subject a function with `invoke: true` answers requests on. */
export function invokeSubject(fn: string): string {
  return `jetfn.invoke.${fn}`;
}

/** What a successful reply's bytes are, in its `Content-Type` header. */
const CONTENT_TYPE = { json: "application/json", text: "text/plain; charset=utf-8", binary: "application/octet-stream" } as const;

/** A function served as an endpoint, and how it is called. */
export interface ServedFunction {
  readonly fn: CompiledFunction;
  readonly caller: SyncCaller;
}

export interface InvokeServiceOptions {
  readonly functions: readonly ServedFunction[];
  /**
   * A return value as bytes, and what they are (invoke/'s `encode` and `encodedType`, given
   * by the host so nats/ needs nothing of invoke/). Never called with `undefined`. May throw
   * for a value that has no encoding.
   */
  readonly encode: (value: unknown) => { readonly bytes: Uint8Array; readonly type: keyof typeof CONTENT_TYPE };
  readonly log: Logger;
}

/**
 * How long `stop()` waits for the server to take the unsubscriptions. While disconnected no
 * request arrives anyway, so a shutdown need not wait for the reconnect.
 */
const STOP_WAIT_MS = 2000;

/** The longest error message put in `Nats-Service-Error`: headers count against max_payload. */
const MAX_ERROR_HEADER = 1024;

const headerGetter = {
  keys: (carrier: Readonly<Record<string, string>>) => Object.keys(carrier),
  get: (carrier: Readonly<Record<string, string>>, key: string) => carrier[key],
};

/**
 * Serves each function with `invoke: true` as an endpoint of the NATS service `jetfn`
 * (the services API): endpoint name the function's, subject `jetfn.invoke.<function>`, in
 * the API's queue group so the replicas share the calls. A request runs the function once
 * through its {@link SyncCaller}; the reply is the return value, or an error in
 * `Nats-Service-Error` / `Nats-Service-Error-Code` with the codes of `CALL_STATUS`.
 */
export class InvokeService {
  readonly #service: Service;
  readonly #options: InvokeServiceOptions;
  readonly #log: Logger;
  #stopping = false;

  private constructor(service: Service, options: InvokeServiceOptions) {
    this.#service = service;
    this.#options = options;
    this.#log = options.log;
  }

  /** Adds the service and its endpoints, and returns once the server has their subscriptions. */
  static async start(nc: NatsConnection, options: InvokeServiceOptions): Promise<InvokeService> {
    const service = await new Svcm(nc).add({
      name: SERVICE_NAME,
      version: JETFN_VERSION,
      description: "jetfn functions called by request/reply",
      metadata: { functions: options.functions.map(({ fn }) => fn.name).join(",") },
    });
    const served = new InvokeService(service, options);
    for (const { fn, caller } of options.functions) {
      service.addEndpoint(fn.name, {
        subject: invokeSubject(fn.name),
        metadata: { timeout: `${fn.timeoutMs}ms`, concurrency: String(fn.concurrency) },
        handler: (error, msg) => {
          // The services API stops the service on a subscription error; stopped() logs it.
          if (!error) served.#serve(fn, caller, msg);
        },
      });
    }
    void service.stopped.then((error) => {
      if (error && !served.#stopping) options.log.error({ err: error }, "the jetfn NATS service stopped: functions are no longer served by request");
    });
    await nc.flush();
    options.log.info({ functions: options.functions.map(({ fn }) => invokeSubject(fn.name)) }, "serving requests");
    return served;
  }

  /** Stops taking requests (calls already running still answer). */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.race([this.#service.stop(), sleep(STOP_WAIT_MS, undefined, { ref: false })]);
  }

  #serve(fn: CompiledFunction, caller: SyncCaller, msg: ServiceMsg): void {
    // A plain publish has nowhere to send the answer to: nothing is run for it.
    if (!msg.reply) {
      this.#log.debug({ function: fn.name, subject: msg.subject }, "request without a reply subject ignored");
      return;
    }
    const headers = plainHeaders(msg.headers);
    void caller
      .call({
        data: msg.data,
        subject: msg.subject,
        headers,
        parent: propagation.extract(ROOT_CONTEXT, headers, headerGetter),
        spanKind: SpanKind.SERVER,
      })
      .then((result) => this.#answer(fn, msg, result));
  }

  #answer(fn: CompiledFunction, msg: ServiceMsg, result: CallResult): void {
    if (result.kind === "ok") {
      if (result.value === undefined) return this.#send(fn, msg, () => msg.respond(Empty));
      let encoded;
      try {
        encoded = this.#options.encode(result.value);
      } catch (error) {
        this.#log.warn({ function: fn.name, err: error }, "a call's return value cannot be encoded");
        return this.#send(fn, msg, () => msg.respondError(CALL_STATUS.failed, `function ${fn.name} returned a value that cannot be encoded`));
      }
      const h = natsHeaders();
      h.set("Content-Type", CONTENT_TYPE[encoded.type]);
      return this.#send(fn, msg, () => msg.respond(encoded.bytes, { headers: h }));
    }
    const h = natsHeaders();
    let body: Uint8Array = Empty;
    if (result.kind === "invalid") {
      h.set("Content-Type", CONTENT_TYPE.json);
      body = new TextEncoder().encode(JSON.stringify({ errors: result.issues }));
    }
    if (result.kind === "unavailable") h.set("Retry-After", String(Math.ceil(result.retryAfterMs / 1000)));
    this.#send(fn, msg, () => msg.respondError(CALL_STATUS[result.kind], headerValue(result.message), body, { headers: h }));
  }

  /** Sends a reply; one that cannot be sent (past max_payload) becomes a 500 without a body. */
  #send(fn: CompiledFunction, msg: ServiceMsg, respond: () => void): void {
    try {
      respond();
    } catch (error) {
      this.#log.warn({ function: fn.name, err: error }, "a call's reply could not be sent");
      try {
        msg.respondError(CALL_STATUS.failed, headerValue(`function ${fn.name}'s answer could not be sent: ${(error as Error).message}`));
      } catch {
        // The connection is gone: the caller's request times out.
      }
    }
  }
}

/** The request's headers as `ctx.headers` (first value of each); no prototype, so `__proto__` is just a header. */
function plainHeaders(h: MsgHdrs | undefined): Record<string, string> {
  const headers = Object.create(null) as Record<string, string>;
  if (h) for (const key of h.keys()) headers[key] = h.get(key);
  return headers;
}

/** A message as a header value: one line, bounded. */
function headerValue(message: string): string {
  const line = message.replace(/[\r\n]+/g, " ");
  return line.length > MAX_ERROR_HEADER ? `${line.slice(0, MAX_ERROR_HEADER - 1)}…` : line;
}
