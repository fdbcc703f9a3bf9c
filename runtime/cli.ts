import { readFileSync } from "node:fs";
import path from "node:path";
import { BundleError, buildHandlers, buildRouteSchemas } from "./bundle/build.ts";
import { loadRouteSchemas } from "./bundle/load.ts";
import { CommandLineError, type CommandRun, formatOverview, parseCommandLine, usageOf } from "./cli/command-line.ts";
import { COMMANDS, OVERVIEW, type ValuesOf } from "./cli/commands.ts";
import { UsageError, withClients } from "./cli/common.ts";
import { pauseOrResume, status } from "./cli/control.ts";
import { cancelDelayedCommand, listDelayedCommand } from "./cli/delayed.ts";
import { deadLetterCommand } from "./cli/dlq.ts";
import { replay } from "./cli/replay.ts";
import { stepsCommand } from "./cli/steps.ts";
import { isDuration, parseDuration } from "./config/duration.ts";
import { loadEnv } from "./config/env.ts";
import { ConfigError } from "./config/errors.ts";
import { loadConfig, loadProject } from "./config/load.ts";
import { configWarnings } from "./config/warnings.ts";
import { consoleSettings, runConsole } from "./console/command.ts";
import { DelayError, resolveDeliverAt } from "./contracts/delayed.ts";
import { runDev } from "./dev.ts";
import { Host } from "./host.ts";
import { prepareHandlers } from "./isolation/check.ts";
import { ensureDelayedStream } from "./nats/delayed-stream.ts";
import { requestInvoke } from "./nats/invoke-client.ts";
import { ProvisionError } from "./nats/provision.ts";
import { JETFN_VERSION } from "./package-root.ts";
import { newFunction } from "./scaffold.ts";
import { CronSchedule } from "./schedule/cron-schedule.ts";
import { createLogger } from "./telemetry/logger.ts";

/** Runs one CLI command; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let usage = formatOverview(COMMANDS, OVERVIEW);
  try {
    const line = parseCommandLine(COMMANDS, OVERVIEW, argv);
    if (line.kind === "help") {
      console.log(line.text);
      return 0;
    }
    if (line.kind === "version") {
      console.log(JETFN_VERSION);
      return 0;
    }
    usage = usageOf(COMMANDS, OVERVIEW, line.command) ?? usage;
    return await run(line);
  } catch (error) {
    if (error instanceof UsageError) {
      const shown = error instanceof CommandLineError ? error.usage : usage;
      console.error(error.showUsage ? `jetfn: ${error.message}\n\n${shown}` : `jetfn: ${error.message}`);
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

function run(line: CommandRun<typeof COMMANDS>): Promise<number> {
  const { positionals } = line;
  switch (line.command) {
    case "start":
      return start();
    case "dev":
      return dev();
    case "new":
      return Promise.resolve(scaffold(line.values, positionals));
    case "build":
      return build();
    case "validate":
      return validate();
    case "schedules":
      return Promise.resolve(schedules(line.values));
    case "publish":
      return publish(line.values, positionals);
    case "invoke":
      return invoke(line.values, positionals);
    case "delayed list":
      return listDelayedCommand(loadEnv(), line.values);
    case "delayed cancel":
      return cancelDelayedCommand(loadEnv(), positionals);
    case "dlq list":
    case "dlq show":
    case "dlq redrive":
    case "dlq purge":
      return deadLetterCommand(line);
    case "steps show":
    case "steps forget":
      return stepsCommand(line);
    case "replay":
      return replay(line.values, positionals);
    case "pause":
      return pauseOrResume("pause", positionals, line.values.reason);
    case "resume":
      return pauseOrResume("resume", positionals);
    case "status":
      return status(line.values);
    case "console":
      return runConsole(loadEnv(), consoleSettings(line.values, process.env));
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

function scaffold(values: ValuesOf<"new">, positionals: readonly string[]): number {
  const [name] = positionals;
  const { subject, stream, route } = values;
  if (!name || !subject || positionals.length > 1) throw new UsageError("new needs <name> --subject <subject>");
  const env = loadEnv();
  const created = newFunction(env.configFile, { name, subject, ...(stream ? { stream } : {}), ...(route !== undefined ? { route } : {}) });
  console.log(`created ${created.handlerFile}`);
  console.log(`created ${created.testFile} (npx vitest run ${path.relative(process.cwd(), created.testFile)})`);
  console.log(`added ${name} to ${env.configFile} (stream ${created.stream}, subject ${subject})`);
  if (created.route) {
    console.log(`added the route ${created.route.route} to routes: in ${env.configFile} (publish: ${subject})`);
    const url = `http://localhost:${env.ingressPort}${created.route.path}`;
    console.log(
      `next: npx jetfn validate, then npm start (or npx jetfn dev) and curl -X ${created.route.method} ${url} -H 'content-type: application/json' -d '{"id":"1"}'`,
    );
  } else {
    console.log(`next: npx jetfn validate, then npm start (or npx jetfn dev) and npx jetfn publish ${subject} '{"id":"1"}'`);
  }
  return 0;
}

async function build(): Promise<number> {
  const env = loadEnv();
  const config = loadConfig(env.configFile);
  for (const built of await buildHandlers(config, { force: true })) console.log(`${built.function}: ${built.file}`);
  for (const [schema, file] of await buildRouteSchemas(config, { force: true }))
    console.log(`${path.relative(config.rootDir, schema)}: ${file}`);
  return 0;
}

async function validate(): Promise<number> {
  const config = loadProject(loadEnv());
  await prepareHandlers(config);
  await loadRouteSchemas(config);
  const routes = config.routes.length > 0 ? `, ${config.routes.length} route(s)` : "";
  console.log(`${config.file}: ${config.functions.length} function(s), ${config.streams.length} stream(s)${routes}: ok`);
  for (const warning of configWarnings(config)) console.error(`warning: ${warning}`);
  return 0;
}

/** `jetfn schedules`: each scheduled function's next ticks, worked out from functions.yaml alone. */
function schedules(values: ValuesOf<"schedules">): number {
  const count = values.count === undefined ? 3 : Number(values.count);
  if (!Number.isInteger(count) || count < 1 || count > 100)
    throw new UsageError(`--count takes a whole number from 1 to 100, got ${values.count}`);
  const config = loadConfig(loadEnv().configFile);
  const now = Date.now();
  const scheduled = config.functions.filter((fn) => fn.schedule);
  if (scheduled.length === 0 && !values.json) console.log("no function has a schedule");
  for (const fn of scheduled) {
    const { cron, timezone, catchUp } = fn.schedule!;
    const schedule = new CronSchedule({ cron, timezone });
    const ticks: number[] = [];
    for (let at = schedule.next(now); at !== undefined && ticks.length < count; at = schedule.next(at)) ticks.push(at);
    if (values.json) {
      const next = ticks.map((at) => ({ at: new Date(at).toISOString(), local: schedule.local(at) }));
      console.log(JSON.stringify({ function: fn.name, cron, timezone, catchUp, next }));
    } else {
      console.log(`${fn.name}: "${cron}" in ${timezone} (catchUp: ${catchUp})`);
      for (const at of ticks) console.log(`  ${schedule.local(at)} ${timezone}  (${new Date(at).toISOString()})`);
    }
  }
  return 0;
}

async function publish(values: ValuesOf<"publish">, positionals: readonly string[]): Promise<number> {
  const [subject, body] = positionals;
  if (!subject || body === undefined || positionals.length > 2) throw new UsageError("publish needs <subject> <json|@file>");
  const text = jsonArgument(body);
  const headers = headerOptions(values.header);
  const msgId = values["msg-id"];
  let deliverAt: number | undefined;
  if (values.delay !== undefined || values.at !== undefined) {
    try {
      deliverAt = resolveDeliverAt(
        { ...(values.delay !== undefined ? { delay: values.delay } : {}), ...(values.at !== undefined ? { at: values.at } : {}) },
        Date.now(),
      );
    } catch (error) {
      if (error instanceof DelayError) throw new UsageError(`publish: ${error.message}`);
      throw error;
    }
  }
  return withClients(loadEnv(), async ({ jsm, publisher }) => {
    if (deliverAt !== undefined) await ensureDelayedStream(jsm);
    const ack = await publisher.publish(subject, new TextEncoder().encode(text), {
      headers,
      ...(msgId ? { msgId } : {}),
      ...(deliverAt !== undefined ? { deliverAt } : {}),
    });
    console.log(JSON.stringify(ack));
    return 0;
  });
}

async function invoke(values: ValuesOf<"invoke">, positionals: readonly string[]): Promise<number> {
  const [name, body] = positionals;
  if (!name || body === undefined || positionals.length > 2) throw new UsageError("invoke needs <function> <json|@file>");
  const { timeout } = values;
  if (!isDuration(timeout) || parseDuration(timeout) === 0) throw new UsageError(`--timeout expects a duration like 30s, got ${timeout}`);
  const data = new TextEncoder().encode(jsonArgument(body));
  const headers = headerOptions(values.header);
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
