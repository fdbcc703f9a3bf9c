import { setTimeout as sleep } from "node:timers/promises";
import { type Endpoint, type Service, type ServiceMsg, Svcm } from "@nats-io/services";
import { Empty, type MsgHdrs, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { propagation, ROOT_CONTEXT, SpanKind } from "@opentelemetry/api";
import type { CompiledFunction } from "../config/types.ts";
import { CALL_STATUS, type CallResult, type SyncCaller } from "../contracts/call.ts";
import type { HostStatus } from "../contracts/status.ts";
import { JETFN_VERSION } from "../package-root.ts";
import type { Logger } from "../telemetry/logger.ts";

/** The NATS service every host runs: `$SRV.PING.jetfn`, `$SRV.INFO.jetfn`, `$SRV.STATS.jetfn`. */
export const SERVICE_NAME = "jetfn";

/** The subject a function with `invoke: true` answers requests on. */
export function invokeSubject(fn: string): string {
  return `jetfn.invoke.${fn}`;
}

/**
 * The endpoint through which a host answers `jetfn status`: a name no function can have
 * (function names are `[a-z0-9-]`), on a subject of its own per host (the service
 * instance's id), so that each host is asked, not one of a queue group.
 */
export const STATUS_ENDPOINT = "_status";

/** The status subject of one service instance. */
export function statusSubject(instanceId: string): string {
  return `jetfn.status.${instanceId}`;
}

/** What a successful reply's bytes are, in its `Content-Type` header. */
const CONTENT_TYPE = { json: "application/json", text: "text/plain; charset=utf-8", binary: "application/octet-stream" } as const;

/** A function served as an endpoint, and how it is called. */
export interface ServedFunction {
  readonly fn: CompiledFunction;
  readonly caller: SyncCaller;
}

export interface JetfnServiceOptions {
  /** The host's id: the service's `host` metadata. */
  readonly hostId: string;
  /** Every function of the host: the service's `functions` metadata. */
  readonly names: readonly string[];
  /** The functions with `invoke: true`. */
  readonly functions: readonly ServedFunction[];
  /** The host's status, for its status endpoint. */
  readonly status: () => Promise<HostStatus>;
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
 * The NATS service `jetfn` (the services API), which every host joins with its version, id
 * and functions, so `$SRV.PING|INFO|STATS.jetfn` and `jetfn status` find every replica.
 * Its endpoints:
 * - each function with `invoke: true`: endpoint name the function's, subject
 *   `jetfn.invoke.<function>`, in the API's queue group so the replicas share the calls. A
 *   request runs the function once through its {@link SyncCaller}; the reply is the return
 *   value, or an error in `Nats-Service-Error` / `Nats-Service-Error-Code` with the codes of
 *   `CALL_STATUS`;
 * - `_status` on `jetfn.status.<instance id>`: the host's {@link HostStatus} as JSON.
 */
export class JetfnService {
  readonly #service: Service;
  readonly #options: JetfnServiceOptions;
  readonly #log: Logger;
  readonly #errors: EndpointErrors;
  #stopping = false;

  private constructor(service: Service, options: JetfnServiceOptions, errors: EndpointErrors) {
    this.#service = service;
    this.#options = options;
    this.#log = options.log;
    this.#errors = errors;
  }

  /** Adds the service and its endpoints, and returns once the server has their subscriptions. */
  static async start(nc: NatsConnection, options: JetfnServiceOptions): Promise<JetfnService> {
    const errors = new EndpointErrors();
    const service = await new Svcm(nc).add({
      name: SERVICE_NAME,
      version: JETFN_VERSION,
      description: "jetfn host: functions called by request/reply, and the host's status",
      metadata: { host: options.hostId, functions: options.names.join(",") },
      statsHandler: async (endpoint) => errors.applyTo(endpoint),
    });
    const served = new JetfnService(service, options, errors);
    service.addEndpoint(STATUS_ENDPOINT, {
      subject: statusSubject(service.info().id),
      handler: (error, msg) => {
        if (!error) served.#status(msg);
      },
    });
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
      if (error && !served.#stopping)
        options.log.error({ err: error }, "the jetfn NATS service stopped: functions are no longer served by request, nor the status");
    });
    await nc.flush();
    if (options.functions.length > 0) {
      options.log.info({ functions: options.functions.map(({ fn }) => invokeSubject(fn.name)) }, "serving requests");
    }
    return served;
  }

  /** Stops taking requests (calls already running still answer). */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.race([this.#service.stop(), sleep(STOP_WAIT_MS, undefined, { ref: false })]);
  }

  #status(msg: ServiceMsg): void {
    if (!msg.reply) return;
    void this.#options
      .status()
      .then((status) => msg.respond(JSON.stringify(status)))
      .catch((error: unknown) => {
        this.#log.warn({ err: error }, "answering a status request failed");
        this.#errors.count(STATUS_ENDPOINT, `status failed: ${(error as Error).message}`);
        try {
          msg.respondError(500, headerValue(`status failed: ${(error as Error).message}`));
        } catch {
          // The connection is gone: the request times out.
        }
      });
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
      let encoded: ReturnType<JetfnServiceOptions["encode"]>;
      try {
        encoded = this.#options.encode(result.value);
      } catch (error) {
        this.#log.warn({ function: fn.name, err: error }, "a call's return value cannot be encoded");
        this.#errors.count(fn.name, `${CALL_STATUS.failed} function ${fn.name} returned a value that cannot be encoded`);
        return this.#send(fn, msg, () =>
          msg.respondError(CALL_STATUS.failed, `function ${fn.name} returned a value that cannot be encoded`),
        );
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
    this.#errors.count(fn.name, `${CALL_STATUS[result.kind]} ${result.message}`);
    this.#send(fn, msg, () => msg.respondError(CALL_STATUS[result.kind], headerValue(result.message), body, { headers: h }));
  }

  /** Sends a reply; one that cannot be sent (past max_payload) becomes a 500 without a body. */
  #send(fn: CompiledFunction, msg: ServiceMsg, respond: () => void): void {
    try {
      respond();
    } catch (error) {
      this.#log.warn({ function: fn.name, err: error }, "a call's reply could not be sent");
      this.#errors.count(fn.name, `${CALL_STATUS.failed} the answer could not be sent: ${(error as Error).message}`);
      try {
        msg.respondError(CALL_STATUS.failed, headerValue(`function ${fn.name}'s answer could not be sent: ${(error as Error).message}`));
      } catch {
        // The connection is gone: the caller's request times out.
      }
    }
  }
}

/**
 * Error replies per endpoint, for `$SRV.STATS.jetfn`. The services API counts an error only
 * when a handler throws synchronously; ours answer asynchronously with `respondError`, so
 * its `num_errors` stayed 0 for every 4xx/5xx reply (the Go and Python services count
 * those). Its stats handler, called per endpoint before each stats reply, hands the counts
 * over.
 */
class EndpointErrors {
  readonly #byEndpoint = new Map<string, { errors: number; last: string }>();

  /** Counts one error reply of the endpoint `name`. */
  count(name: string, message: string): void {
    const entry = this.#byEndpoint.get(name);
    if (entry) {
      entry.errors++;
      entry.last = message;
    } else this.#byEndpoint.set(name, { errors: 1, last: message });
  }

  /** Sets the endpoint's `num_errors` and `last_error`; returns no `data`. */
  applyTo(endpoint: Endpoint): undefined {
    const entry = this.#byEndpoint.get((endpoint as { name?: string }).name ?? "");
    // The handler's own stats object, which the stats reply is read from right after this:
    // not in the API's types (3.0.0-25), so checked before it is written.
    const stats = (endpoint as { stats?: { num_errors?: unknown; last_error?: unknown } }).stats;
    if (!entry || typeof stats?.num_errors !== "number") return undefined;
    // Synchronous throws (counted by the API itself) are not expected from our handlers; keep the larger.
    stats.num_errors = Math.max(stats.num_errors, entry.errors);
    stats.last_error = entry.last;
    return undefined;
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
