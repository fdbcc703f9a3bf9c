import type { JetStreamManager } from "@nats-io/jetstream";
import { ServiceError, type ServiceInfo, Svcm } from "@nats-io/services";
import { type NatsConnection, NoRespondersError, RequestError } from "@nats-io/transport-node";
import type { FleetHost, FleetStatus, HostStatus } from "../contracts/status.ts";
import { SERVICE_NAME, STATUS_ENDPOINT } from "./service.ts";

export interface FleetStatusOptions {
  /** How long replies to `$SRV.INFO.jetfn` are collected. @default 1000 */
  readonly discoverMs?: number;
  /** How long each host has to answer its status request. @default 2000 */
  readonly timeoutMs?: number;
}

/**
 * Every replica of the NATS service `jetfn` and its status: the replicas answer
 * `$SRV.INFO.jetfn` (collected for `discoverMs`), then each is asked on its own status
 * endpoint. A replica that does not answer is listed with an `error`. Each function's dead
 * letters are counted once, from the stream capturing its dead-letter subject.
 */
export async function fleetStatus(nc: NatsConnection, jsm: JetStreamManager, options: FleetStatusOptions = {}): Promise<FleetStatus> {
  const at = new Date().toISOString();
  const infos: ServiceInfo[] = [];
  try {
    const replies = await new Svcm(nc).client({ strategy: "timer", maxWait: options.discoverMs ?? 1000 }).info(SERVICE_NAME);
    for await (const info of replies) infos.push(info);
  } catch (error) {
    // No host runs: the server says so at once.
    const noResponders = error instanceof NoRespondersError || (error instanceof RequestError && error.isNoResponders());
    if (!noResponders) throw error;
  }
  const hosts = await Promise.all(infos.map((info) => hostStatus(nc, info, options.timeoutMs ?? 2000)));
  const subjects = new Set(hosts.flatMap((h) => h.functions.map((f) => f.deadLetter)));
  const counts = new Map(await Promise.all([...subjects].map(async (subject) => [subject, await deadLetterCount(jsm, subject)] as const)));
  const withCounts = hosts.map((h) => ({
    ...h,
    functions: h.functions.map((f) => {
      const count = counts.get(f.deadLetter);
      return count === undefined ? f : { ...f, deadLetters: count };
    }),
  }));
  withCounts.sort((a, b) => a.host.localeCompare(b.host) || a.id.localeCompare(b.id));
  return { at, hosts: withCounts };
}

async function hostStatus(nc: NatsConnection, info: ServiceInfo, timeoutMs: number): Promise<FleetHost> {
  const known = { id: info.id, host: info.metadata?.host ?? info.id, version: info.version, functions: [] };
  const endpoint = info.endpoints.find((e) => e.name === STATUS_ENDPOINT);
  if (!endpoint) return { ...known, error: "no status endpoint (an older jetfn)" };
  try {
    const reply = await nc.request(endpoint.subject, undefined, { timeout: timeoutMs });
    const failed = ServiceError.toServiceError(reply);
    if (failed) return { ...known, error: `status failed: ${failed.message}` };
    const status = reply.json<HostStatus>();
    return { id: info.id, ...status };
  } catch (error) {
    return { ...known, error: `no answer within ${timeoutMs} ms (${(error as Error).message})` };
  }
}

/** Messages on `subject` in the stream that captures it; undefined when no stream does. */
async function deadLetterCount(jsm: JetStreamManager, subject: string): Promise<number | undefined> {
  try {
    const stream = await jsm.streams.find(subject);
    const info = await jsm.streams.info(stream, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  } catch {
    return undefined;
  }
}
