import path from "node:path";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { BundleError, buildHandlers, buildRouteSchemas } from "./bundle/build.ts";
import { loadRouteSchemas } from "./bundle/load.ts";
import { UsageError, withClients } from "./cli/common.ts";
import { pauseOrResume, status } from "./cli/control.ts";
import { deadLetterCommand } from "./cli/dlq.ts";
import { replay, REPLAY_USAGE } from "./cli/replay.ts";
import { isDuration, parseDuration } from "./config/duration.ts";
import { ConfigError } from "./config/errors.ts";
import { loadEnv } from "./config/env.ts";
import { loadConfig } from "./config/load.ts";
import { runDev } from "./dev.ts";
import { Host } from "./host.ts";
import { prepareHandlers } from "./isolation/check.ts";
import { requestInvoke } from "./nats/invoke-client.ts";
import { ProvisionError } from "./nats/provision.ts";
import { newFunction } from "./scaffold.ts";
import { createLogger } from "./telemetry/logger.ts";

const USAGE = `Usage: jetfn <command> [options]

Commands:
  start                         run every function in functions.yaml
  dev                           like start, and reload on every change to functions/ or functions.yaml
  new <name> --subject <subject> [--stream <stream>]
                                add functions/<name>.ts and its entry in functions.yaml
  build                         bundle every handler into .jetfn/build
  validate                      check functions.yaml, the environment and every handler; no connection
  publish <subject> <json|@file> [--header k=v]... [--msg-id id]
                                publish one event to JetStream
  invoke <function> <json|@file> [--timeout 30s] [--header k=v]...
                                call a function with invoke: true over NATS and print its answer
  dlq list [function] [--reason r] [--since <time|duration>] [--limit n] [--json]
                                show dead letters, oldest first; --reason is one of non-retryable,
                                attempts-exhausted, undecodable, invalid, crashed
  dlq show <function> <seq> [--json]
                                print one dead letter (its JETFN_DLQ#<seq>): headers, failure,
                                origin, and the body as JSON or a hex dump
  dlq redrive <function> [--seq n]... [--only]
                                send a function's dead letters (or the given ones) back to
                                their original subject, then remove them from the dead letters;
                                with --only, to that function alone, as replays
  dlq purge <function> [--seq n]... [--before <time|duration>] [--yes]
                                remove a function's dead letters (all, the given ones, or those
                                that failed before a time); asks on a terminal, else needs --yes
${REPLAY_USAGE}
  pause <function> [--reason text]
                                stop the function on every host (in-flight invocations finish)
  resume <function>             start it again on every host
  status [--json] [--watch]     every running host and its functions, from the jetfn service

Environment: NATS_URL, JETFN_CONFIG (default functions.yaml), JETFN_HTTP_PORT, LOG_LEVEL, ... (see README)
Exit codes: 0 done, 1 runtime failure (for invoke: the function answered with an error, or
no host serves it), 2 bad configuration or usage.`;

/** Runs one CLI command; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "start":
        return await start();
      case "dev":
        return await dev();
      case "new":
        return scaffold(rest);
      case "build":
        return await build();
      case "validate":
        return await validate();
      case "publish":
        return await publish(rest);
      case "invoke":
        return await invoke(rest);
      case "dlq":
        return await deadLetterCommand(rest);
      case "replay":
        return await replay(rest);
      case "pause":
      case "resume":
        return await pauseOrResume(command, rest);
      case "status":
        return await status(rest);
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return 0;
      default:
        throw new UsageError(command ? `unknown command: ${command}` : "no command given");
    }
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.showUsage ? `jetfn: ${error.message}\n\n${USAGE}` : `jetfn: ${error.message}`);
      return 2;
    }
    if (error instanceof ConfigError || error instanceof BundleError || error instanceof ProvisionError) {
      console.error(`jetfn: ${error.message}`);
      return 2;
    }
    console.error(`jetfn: ${(error as Error).message ?? String(error)}`);
    return 1;
  }
}

async function start(): Promise<number> {
  const env = loadEnv();
  const host = await Host.create({ env });
  let signals = 0;
  const stopped = new Promise<void>((resolve, reject) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (++signals > 1) {
        host.log.warn({ signal }, "second signal: exiting now");
        process.exit(1);
      }
      host.log.info({ signal }, "signal received: shutting down");
      host.shutdown().then(resolve, reject);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
  try {
    await host.start();
  } catch (error) {
    await host.shutdown();
    if (signals > 0) return 0; // stopped on purpose while starting
    throw error;
  }
  await stopped;
  return 0;
}

async function dev(): Promise<number> {
  const env = loadEnv();
  const log = createLogger(env.logLevel);
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (): void => {
    if (++signals > 1) process.exit(1);
    stop.abort();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  await runDev(env, log, stop.signal);
  return 0;
}

function scaffold(args: string[]): number {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { subject: { type: "string" }, stream: { type: "string" } },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const [name] = parsed.positionals;
  const { subject, stream } = parsed.values;
  if (!name || !subject || parsed.positionals.length > 1) throw new UsageError("new needs <name> --subject <subject>");
  const env = loadEnv();
  const created = newFunction(env.configFile, { name, subject, ...(stream ? { stream } : {}) });
  console.log(`created ${created.handlerFile}`);
  console.log(`created ${created.testFile} (npx vitest run ${path.relative(process.cwd(), created.testFile)})`);
  console.log(`added ${name} to ${env.configFile} (stream ${created.stream}, subject ${subject})`);
  console.log(`next: npx jetfn validate, then npm start (or npx jetfn dev) and npx jetfn publish ${subject} '{"id":"1"}'`);
  return 0;
}

async function build(): Promise<number> {
  const env = loadEnv();
  const config = loadConfig(env.configFile);
  for (const built of await buildHandlers(config, { force: true })) console.log(`${built.function}: ${built.file}`);
  for (const [schema, file] of await buildRouteSchemas(config, { force: true })) console.log(`${path.relative(config.rootDir, schema)}: ${file}`);
  return 0;
}

async function validate(): Promise<number> {
  const env = loadEnv();
  const config = loadConfig(env.configFile);
  await prepareHandlers(config);
  await loadRouteSchemas(config);
  const routes = config.routes.length > 0 ? `, ${config.routes.length} route(s)` : "";
  console.log(`${config.file}: ${config.functions.length} function(s), ${config.streams.length} stream(s)${routes}: ok`);
  return 0;
}

async function publish(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { header: { type: "string", multiple: true, short: "H" }, "msg-id": { type: "string" } },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const [subject, body] = parsed.positionals;
  if (!subject || body === undefined || parsed.positionals.length > 2) throw new UsageError("publish needs <subject> <json|@file>");
  const text = jsonArgument(body);
  const headers = headerOptions(parsed.values.header);
  const msgId = parsed.values["msg-id"];
  return withClients(loadEnv(), async ({ publisher }) => {
    const ack = await publisher.publish(subject, new TextEncoder().encode(text), { headers, ...(msgId ? { msgId } : {}) });
    console.log(JSON.stringify(ack));
    return 0;
  });
}

async function invoke(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { header: { type: "string", multiple: true, short: "H" }, timeout: { type: "string", default: "30s" } },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const [name, body] = parsed.positionals;
  if (!name || body === undefined || parsed.positionals.length > 2) throw new UsageError("invoke needs <function> <json|@file>");
  const { timeout } = parsed.values;
  if (!isDuration(timeout) || parseDuration(timeout) === 0) throw new UsageError(`--timeout expects a duration like 30s, got ${timeout}`);
  const data = new TextEncoder().encode(jsonArgument(body));
  const headers = headerOptions(parsed.values.header);
  return withClients(loadEnv(), async ({ nc }) => {
    const reply = await requestInvoke(nc, name, data, { timeoutMs: parseDuration(timeout), headers });
    switch (reply.kind) {
      case "ok":
        process.stdout.write(reply.data);
        // A newline for the terminal, never inside bytes a pipe is meant to get as they are.
        if (reply.data.length > 0 && reply.contentType !== "application/octet-stream") process.stdout.write("\n");
        return 0;
      case "error":
        console.error(`error ${reply.code}: ${reply.message}${reply.retryAfter ? ` (retry after ${reply.retryAfter}s)` : ""}`);
        if (reply.data.length > 0) console.error(new TextDecoder().decode(reply.data));
        return 1;
      case "no-responders":
        console.error(`jetfn: no running host serves function ${name} (is it \`invoke: true\` in functions.yaml?)`);
        return 1;
      case "timeout":
        console.error(`jetfn: function ${name} did not answer within ${timeout}`);
        return 1;
    }
  });
}

/** A `<json|@file>` argument's text; not JSON is a usage error. */
function jsonArgument(argument: string): string {
  const text = argument.startsWith("@") ? readFileSync(argument.slice(1), "utf8") : argument;
  try {
    JSON.parse(text);
  } catch (error) {
    throw new UsageError(`the event is not valid JSON: ${(error as Error).message}`);
  }
  return text;
}

/** `--header k=v` options as a record. */
function headerOptions(values: readonly string[] | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const header of values ?? []) {
    const eq = header.indexOf("=");
    if (eq <= 0) throw new UsageError(`--header expects key=value, got ${header}`);
    headers[header.slice(0, eq)] = header.slice(eq + 1);
  }
  return headers;
}
