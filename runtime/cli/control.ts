import { hostname, userInfo } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { loadEnv } from "../config/env.ts";
import { loadConfig } from "../config/load.ts";
import { openControlBucket, pauseKey, readPause, writePause } from "../nats/control.ts";
import { fleetStatus } from "../nats/status-client.ts";
import type { ValuesOf } from "./commands.ts";
import { UsageError, withClients } from "./common.ts";
import { formatStatusTable } from "./status-table.ts";

/**
 * `jetfn pause` / `jetfn resume`: writes the function's state to `JETFN_CONTROL`; every
 * host applies it within moments. The name is checked against functions.yaml.
 */
export async function pauseOrResume(command: "pause" | "resume", positionals: readonly string[], reason?: string): Promise<number> {
  const [name] = positionals;
  if (!name || positionals.length > 1) throw new UsageError(`${command} needs one <function>`);
  const env = loadEnv();
  const config = loadConfig(env.configFile);
  if (!config.functions.some((f) => f.name === name)) throw new UsageError(`no function named ${name} in ${config.file}`);
  return withClients(env, async ({ nc }) => {
    const kv = await openControlBucket(nc);
    const current = await kv.get(pauseKey(name));
    const was = current?.operation === "PUT" ? readPause(current.value) : undefined;
    const paused = was !== undefined && was !== "invalid";
    if (command === "resume" && !paused) {
      console.log(`${name} is not paused`);
      return 0;
    }
    if (command === "pause" && paused && !reason) {
      // Nothing to change: the pause in force keeps its reason, time and author.
      console.log(`${name} is paused already, since ${was.at} by ${was.by}${was.reason ? ` (reason: ${was.reason})` : ""}`);
      return 0;
    }
    await writePause(kv, name, {
      paused: command === "pause",
      ...(command === "pause" && reason ? { reason } : {}),
      at: new Date().toISOString(),
      by: operator(),
    });
    if (command === "pause") {
      const since = paused ? `; it was paused already, since ${was.at} by ${was.by}` : "";
      console.log(`paused ${name}${reason ? ` (reason: ${reason})` : ""}${since}`);
      console.log("every host stops pulling it within 2 s; invocations running now finish");
    } else {
      console.log(`resumed ${name}: every host pulls it again`);
    }
    return 0;
  });
}

/** Who runs the CLI, for the record in JETFN_CONTROL. */
function operator(): string {
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (a container running as an arbitrary uid)
  }
  return `${user}@${hostname()}`;
}

/** How often `jetfn status --watch` refreshes. */
const WATCH_EVERY_MS = 2000;

/** `jetfn status`: every host of the jetfn service, and its functions. */
export async function status(values: ValuesOf<"status">): Promise<number> {
  const { json, watch } = values;
  const env = loadEnv();
  const servers = (env.natsUrl ?? ["nats://127.0.0.1:4222"]).join(",");
  return withClients(env, async ({ nc, jsm }) => {
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      do {
        const started = Date.now();
        const fleet = await fleetStatus(nc, jsm);
        if (json) {
          console.log(watch ? JSON.stringify(fleet) : JSON.stringify(fleet, null, 2));
          if (!watch && fleet.hosts.length === 0) console.error(`jetfn: no jetfn host answered on ${servers}`);
        } else {
          // On a terminal, each refresh takes the screen's place; in a pipe, they follow each other.
          if (watch && process.stdout.isTTY) process.stdout.write("\x1b[2J\x1b[H");
          console.log(fleet.hosts.length > 0 ? formatStatusTable(fleet) : `no jetfn host answered on ${servers}`);
        }
        if (!watch) return fleet.hosts.length > 0 ? 0 : 1;
        await sleep(Math.max(0, WATCH_EVERY_MS - (Date.now() - started)), undefined, { signal: stop.signal }).catch(() => {});
      } while (!stop.signal.aborted);
      return 0;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  });
}
