/**
 * Functions called by NATS request/reply: each function with `invoke: true` is the endpoint
 * `jetfn.invoke.<function>` of the service `jetfn`, against a real nats-server and
 * in-process hosts. Every answer of the outcome table (200, 400, 422, 503, 504, 500),
 * replicas sharing the calls, the services API's discovery, and shutdown letting a running
 * call answer.
 */
import { type ServiceIdentity, type ServiceInfo, Svcm } from "@nats-io/services";
import { type Msg, headers as natsHeaders, RequestError } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../runtime/host.ts";
import { makeProject, startHost, useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

/** The handlers are in test/fixtures/invoke-service/; `replica` tells the hosts apart. */
const yaml = (replica: string) => `
defaults:
  config: { replica: ${replica} }
streams:
  - { name: SVC, subjects: ["svc.>"], storage: memory }
functions:
  - { name: quote, handler: quote.ts, stream: SVC, subjects: [svc.quote], invoke: true }
  - { name: decline, handler: decline.ts, stream: SVC, subjects: [svc.decline], invoke: true }
  - { name: broken, handler: broken.ts, stream: SVC, subjects: [svc.broken], invoke: true }
  - { name: later, handler: later.ts, stream: SVC, subjects: [svc.later], invoke: true }
  - { name: slow, handler: slow.ts, stream: SVC, subjects: [svc.slow], invoke: true, timeout: 300ms }
  - { name: wait, handler: wait.ts, stream: SVC, subjects: [svc.wait], invoke: true, concurrency: 1 }
  - { name: nothing, handler: nothing.ts, stream: SVC, subjects: [svc.nothing], invoke: true }
  - name: guarded
    handler: broken.ts
    stream: SVC
    subjects: [svc.guarded]
    invoke: true
    breaker: { failureThreshold: 2, openFor: 5s }
  - { name: hidden, handler: quote.ts, stream: SVC, subjects: [svc.hidden] }
`;

const nats = useNats();
let host: Host;

beforeAll(async () => {
  ({ host } = await startHost(makeProject({ "functions.yaml": yaml("a") }, { fixtures: "invoke-service" }), nats.server.url));
});

afterAll(async () => {
  await host?.shutdown();
});

const decoder = new TextDecoder();

function call(fn: string, body: unknown, headers: Record<string, string> = {}): Promise<Msg> {
  const h = natsHeaders();
  for (const [key, value] of Object.entries(headers)) h.set(key, value);
  return nats.nc.request(`jetfn.invoke.${fn}`, typeof body === "string" ? body : JSON.stringify(body), { timeout: 10_000, headers: h });
}

/** The reply's service error, or undefined for a success. */
function serviceError(reply: Msg): { code: number; message: string } | undefined {
  const code = reply.headers?.get("Nats-Service-Error-Code");
  return code ? { code: Number(code), message: reply.headers!.get("Nats-Service-Error") } : undefined;
}

/** Whether a request to the subject finds no responder at all. */
async function noResponders(subject: string): Promise<boolean> {
  try {
    await nats.nc.request(subject, "{}", { timeout: 5000 });
    return false;
  } catch (error) {
    if (error instanceof RequestError && error.isNoResponders()) return true;
    throw error;
  }
}

describe("answers", () => {
  it("200: the return value, with ctx.subject the request's, seq 0, delivery 1, headers and trace", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const reply = await call("quote", { qty: 21 }, { "x-customer": "c-7", traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    expect(serviceError(reply)).toBeUndefined();
    expect(reply.headers?.get("Content-Type")).toBe("application/json");
    expect(reply.json()).toEqual({
      price: 42,
      subject: "jetfn.invoke.quote",
      seq: 0,
      deliveryCount: 1,
      customer: "c-7",
      traceId,
      replica: "a",
    });
  });

  it("200: a string comes back as text, nothing as an empty payload", async () => {
    const text = await call("wait", { ms: 1 });
    expect(serviceError(text)).toBeUndefined();
    expect(text.string()).toBe("waited 1 ms");
    expect(text.headers?.get("Content-Type")).toBe("text/plain; charset=utf-8");
    const empty = await call("nothing", {});
    expect(serviceError(empty)).toBeUndefined();
    expect(empty.data).toHaveLength(0);
  });

  it("400: a schema failure, with each failing field in the body", async () => {
    const reply = await call("quote", { qty: -1 });
    expect(serviceError(reply)).toEqual({ code: 400, message: "the event does not match the function's schema" });
    expect(reply.headers?.get("Content-Type")).toBe("application/json");
    const { errors } = reply.json<{ errors: { path: string; message: string }[] }>();
    expect(errors).toHaveLength(1);
    expect(errors[0]!.path).toBe("qty");
    expect(errors[0]!.message).toEqual(expect.any(String));
  });

  it("400: a body that is not JSON", async () => {
    const reply = await call("quote", "{not json");
    expect(serviceError(reply)?.code).toBe(400);
    expect(serviceError(reply)?.message).toMatch(/^payload is not valid JSON/);
    expect(reply.json<{ errors: unknown[] }>().errors).toHaveLength(1);
  });

  it("422: a NonRetryableError, with its message", async () => {
    const reply = await call("decline", {});
    expect(serviceError(reply)).toEqual({ code: 422, message: "card declined" });
    expect(reply.data).toHaveLength(0);
  });

  it("500: any other error, without the handler's own text", async () => {
    const reply = await call("broken", {});
    expect(serviceError(reply)).toEqual({ code: 500, message: "function broken failed" });
    expect(decoder.decode(reply.data)).toBe("");
    expect(JSON.stringify([...reply.headers!.keys()].map((k) => reply.headers!.get(k)))).not.toContain("hunter2");
  });

  it("503 with Retry-After: a RetryAfterError (seconds, rounded up)", async () => {
    const reply = await call("later", {});
    expect(serviceError(reply)).toEqual({ code: 503, message: "rate limited" });
    expect(reply.headers?.get("Retry-After")).toBe("3");
  });

  it("503 with Retry-After while the function's breaker is open", async () => {
    for (let i = 0; i < 2; i++) expect(serviceError(await call("guarded", {}))?.code).toBe(500);
    const reply = await call("guarded", {});
    expect(serviceError(reply)).toEqual({ code: 503, message: "function guarded is not taking calls: a breaker is open" });
    const retryAfter = Number(reply.headers?.get("Retry-After"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(5);
  });

  it("503 past the function's concurrency: calls are not queued", async () => {
    const [first, second] = await Promise.all([call("wait", { ms: 500 }), call("wait", { ms: 500 })]);
    const codes = [first!, second!].map((reply) => serviceError(reply)?.code ?? 200).sort();
    expect(codes).toEqual([200, 503]);
  });

  it("504: the function's timeout", async () => {
    const started = Date.now();
    const reply = await call("slow", {});
    expect(serviceError(reply)).toEqual({ code: 504, message: "function slow did not answer within 300 ms" });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("a function without invoke: true is not served", async () => {
    expect(await noResponders("jetfn.invoke.hidden")).toBe(true);
  });
});

describe("the services API", () => {
  it("$SRV.PING.jetfn and $SRV.INFO.jetfn answer plain requests", async () => {
    const ping = (await nats.nc.request("$SRV.PING.jetfn", "", { timeout: 5000 })).json<ServiceIdentity>();
    expect(ping).toMatchObject({ type: "io.nats.micro.v1.ping_response", name: "jetfn", version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    const info = (await nats.nc.request("$SRV.INFO.jetfn", "", { timeout: 5000 })).json<ServiceInfo>();
    expect(info.name).toBe("jetfn");
    expect(info.metadata?.functions?.split(",")).toContain("quote");
    const quote = info.endpoints.find((e) => e.name === "quote");
    expect(quote).toMatchObject({ subject: "jetfn.invoke.quote", queue_group: "q" });
    expect(info.endpoints.map((e) => e.name)).not.toContain("hidden");
  });

  it("the services client finds the service", async () => {
    const infos: ServiceInfo[] = [];
    for await (const info of await new Svcm(nats.nc).client().info("jetfn")) infos.push(info);
    expect(infos).toHaveLength(1);
    expect(infos[0]!.endpoints.map((e) => e.subject)).toContain("jetfn.invoke.decline");
  });
});

describe("replicas", () => {
  it("two hosts share the calls through the queue group", async () => {
    const { host: second } = await startHost(makeProject({ "functions.yaml": yaml("b") }, { fixtures: "invoke-service" }), nats.server.url);
    try {
      const replicas = new Set<string>();
      for (let i = 0; i < 200 && replicas.size < 2; i++) {
        const reply = await call("quote", { qty: 1 });
        expect(serviceError(reply)).toBeUndefined();
        replicas.add(reply.json<{ replica: string }>().replica);
      }
      expect([...replicas].sort()).toEqual(["a", "b"]);
    } finally {
      await second.shutdown();
    }
  });
});

describe("shutdown", () => {
  it("stops taking requests at once, and lets a running call answer", async () => {
    let answered = false;
    const running = call("wait", { ms: 1000 }).finally(() => (answered = true));
    await waitFor(() => (host.functions() as { name: string; calls: number }[]).find((f) => f.name === "wait")?.calls === 1, {
      message: "the call is running",
    });
    const stopped = host.shutdown();
    await waitFor(() => noResponders("jetfn.invoke.quote"), { message: "no host serves quote" });
    expect(answered).toBe(false);
    const reply = await running;
    expect(serviceError(reply)).toBeUndefined();
    expect(reply.string()).toBe("waited 1000 ms");
    await stopped;
    expect(host.state).toBe("stopped");
  });
});
