import { context, propagation, trace } from "@opentelemetry/api";
import {
  CompositePropagator,
  type ExportResult,
  ExportResultCode,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from "@opentelemetry/core";
import type { ReadableSpan, Sampler, SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { CompiledTracing } from "../config/types.ts";
import type { Logger } from "./logger.ts";

/** The installed tracing, shared by every host in the process. */
export interface Tracing {
  /** True when spans are exported (an OTLP endpoint is configured). */
  readonly exporting: boolean;
  /**
   * Exports what is buffered, waiting a bounded time. A host calls it when it stops; the
   * provider itself stays up, since another host may follow in the same process (`jetfn dev`).
   */
  flush(): Promise<void>;
}

let installed: Promise<Tracing> | undefined;
let recording = false;

/**
 * True once spans are recorded and exported in this thread. Without it every span is a
 * no-op, so the hot paths skip building their attributes (and a message without a
 * `traceparent` skips extracting one).
 */
export function spansRecorded(): boolean {
  return recording;
}

/** How long a flush waits for the last spans to be exported. */
const FLUSH_TIMEOUT_MS = 3000;

/**
 * Installs tracing once per process (per thread: a handler thread installs its own). W3C
 * trace context and baggage propagation is always on, so a `traceparent` that arrives with
 * a message travels on through `ctx.publish`, outputs and dead letters even when nothing
 * is exported. With an OTLP endpoint, spans are recorded by an SDK tracer provider and
 * exported in batches over OTLP/HTTP; without one, the API stays a no-op and costs next to
 * nothing, and the SDK is not even loaded (it is imported on demand: every handler thread
 * would otherwise load it for nothing).
 */
export async function installTracing(config: CompiledTracing | undefined, log: Logger, handlersHere = true): Promise<Tracing> {
  installed ??= install(config, log);
  const tracing = await installed;
  if (handlersHere && tracing.exporting) await followActiveContext();
  return tracing;
}

let following: Promise<void> | undefined;

/**
 * Lets the active span follow handler code across `await`s (so a span a handler starts
 * nests under its delivery's span): an AsyncLocalStorage context manager. It costs on every
 * promise made in the thread (async hooks), so it is installed only where handler code runs:
 * in handler threads, and in the host's thread when a function there has `isolation: none`.
 * jetfn's own code passes its contexts explicitly and needs none.
 */
function followActiveContext(): Promise<void> {
  following ??= import("@opentelemetry/context-async-hooks").then(({ AsyncLocalStorageContextManager }) => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  });
  return following;
}

/** What {@link installTracing} installed, if it was called. */
export function installedTracing(): Promise<Tracing> | undefined {
  return installed;
}

async function install(config: CompiledTracing | undefined, log: Logger): Promise<Tracing> {
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
  if (!config) return { exporting: false, flush: async () => {} };
  const [sdk, { OTLPTraceExporter }, { resourceFromAttributes }] = await Promise.all([
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-proto"),
    import("@opentelemetry/resources"),
  ]);
  const exporter = new LoggedExporter(new OTLPTraceExporter({ url: config.endpoint }), config.endpoint, log);
  const provider = new sdk.BasicTracerProvider({
    resource: resourceFromAttributes({ ...config.resourceAttributes, "service.name": config.serviceName }),
    sampler: sampler(sdk, config),
    spanProcessors: [new sdk.BatchSpanProcessor(exporter)],
  });
  trace.setGlobalTracerProvider(provider);
  recording = true;
  log.info({ endpoint: config.endpoint, sampler: config.sampler }, "exporting traces over OTLP/HTTP (protobuf)");
  return {
    exporting: true,
    flush: async () => {
      // A collector that is down must not hold the exit: what is not flushed by then is dropped.
      const timeout = new Promise<"timeout">((resolve) => setTimeout(resolve, FLUSH_TIMEOUT_MS, "timeout").unref());
      try {
        // The processor's flush sends what it buffers; the exporter's waits for what is
        // already on its way (a batch its timer sent), which a thread's exit would cut off.
        const flushed = provider.forceFlush().then(() => exporter.forceFlush());
        if ((await Promise.race([flushed, timeout])) === "timeout") {
          log.warn({ timeout_ms: FLUSH_TIMEOUT_MS }, "flushing traces timed out; the remaining spans are dropped");
        }
      } catch (error) {
        log.warn({ err: error }, "flushing traces failed");
      }
    },
  };
}

function sampler(sdk: typeof import("@opentelemetry/sdk-trace-base"), config: CompiledTracing): Sampler {
  const { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler } = sdk;
  switch (config.sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(config.samplerRatio);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.samplerRatio) });
  }
}

/**
 * Logs the first failed export, and the recovery, instead of every failure: a collector
 * that is down must not flood the log. Exports run in the batch processor, never in the
 * pull loop, so a slow collector costs dropped spans, not throughput.
 */
class LoggedExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #endpoint: string;
  readonly #log: Logger;
  #failing = false;

  constructor(inner: SpanExporter, endpoint: string, log: Logger) {
    this.#inner = inner;
    this.#endpoint = endpoint;
    this.#log = log;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS && !this.#failing) {
        this.#failing = true;
        this.#log.warn(
          { endpoint: this.#endpoint, err: result.error },
          "exporting traces failed; spans are dropped until the collector answers",
        );
      } else if (result.code === ExportResultCode.SUCCESS && this.#failing) {
        this.#failing = false;
        this.#log.info({ endpoint: this.#endpoint }, "exporting traces again");
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}
