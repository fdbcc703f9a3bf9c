import { loadEnv } from "../config/env.ts";
import { loadConfig } from "../config/load.ts";
import type { CompiledEnv, CompiledFunction } from "../config/types.ts";
import { DEAD_LETTER_REASONS, type DeadLetterReason } from "../contracts/dead-letter.ts";
import type { NatsClients } from "../nats/clients.ts";
import { type DeadLetter, getDeadLetter, listDeadLetters, planDeadLetterPurge, redriveDeadLetters } from "../nats/dead-letters.ts";
import { replayConsumerExists } from "../nats/replay-copies.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { CommandRun } from "./command-line.ts";
import type { COMMANDS } from "./commands.ts";
import { confirm, positiveIntegers, UsageError, withClients } from "./common.ts";
import { deadLetterJson, renderDeadLetter } from "./dead-letter-view.ts";
import { parseTimeArgument } from "./time-argument.ts";

/** A parsed `jetfn dlq <action>` command line. */
type DeadLetterLine = Extract<CommandRun<typeof COMMANDS>, { command: `dlq ${string}` }>;

/** `jetfn dlq list|show|redrive|purge`; resolves with the exit code. */
export async function deadLetterCommand(line: DeadLetterLine): Promise<number> {
  const [name, ...others] = line.positionals;
  const env = loadEnv();
  const config = loadConfig(env.configFile);
  const chosen = name ? config.functions.filter((f) => f.name === name) : config.functions;
  if (name && chosen.length === 0) throw new UsageError(`no function named ${name} in ${config.file}`);
  /** The one function named; undefined when none was (only `list` goes without). */
  const fn = name ? chosen[0] : undefined;

  switch (line.command) {
    case "dlq list": {
      const { values } = line;
      if (others.length > 0) throw new UsageError("dlq list takes at most one function");
      const [limit] = positiveIntegers(values.limit === undefined ? [] : [values.limit], "limit");
      const reason = reasonOption(values.reason);
      const since = timeOption(values.since, "since");
      return withClients(env, async (clients, server) => {
        for (const each of chosen) {
          const letters = await located(each.name, server, () => listDeadLetters(clients, each, { limit, reason, since }));
          for (const letter of letters) console.log(values.json ? JSON.stringify(letter) : describe(letter));
        }
        return 0;
      });
    }
    case "dlq show": {
      const { values } = line;
      const [seq] = others;
      if (!fn || seq === undefined || others.length > 1)
        throw new UsageError("dlq show needs <function> <seq> (the JETFN_DLQ#<seq> dlq list shows)");
      const [dlqSeq] = positiveIntegers([seq], "seq");
      return forFunction(env, fn, (clients) => show(clients, fn, dlqSeq!, values.json === true));
    }
    case "dlq redrive": {
      const { values } = line;
      if (!fn) throw new UsageError("dlq redrive needs the function whose dead letters to send back");
      const only = values.seq ? new Set(positiveIntegers(values.seq, "seq")) : undefined;
      return forFunction(env, fn, async (clients, _server, log) => {
        if (values.only) {
          if (!(await replayConsumerExists(clients, fn))) {
            console.error(`note: no host has consumed ${fn.name}'s replays yet; they wait in JETFN_REPLAY until one starts`);
          }
          const redriven = await redriveDeadLetters(clients, fn, only, { log });
          for (const letter of redriven) console.log(`redriven ${describe(letter)}`);
          console.error(`${redriven.length} dead letter(s) of ${fn.name} sent back to ${fn.name} alone`);
          return 0;
        }
        const redriven = await redriveDeadLetters(clients, fn, only);
        for (const letter of redriven) console.log(`redriven ${describe(letter)}`);
        const sharing = new Set(
          redriven.flatMap((letter) =>
            config.functions.filter((f) => f.name !== fn.name && f.subjects.includes(letter.subject)).map((f) => f.name),
          ),
        );
        if (sharing.size > 0) console.error(`note: ${[...sharing].join(", ")} also receive these subjects and will see them again`);
        console.error(`${redriven.length} dead letter(s) of ${fn.name} sent back`);
        return 0;
      });
    }
    case "dlq purge": {
      const { values } = line;
      if (!fn || others.length > 0) throw new UsageError("dlq purge needs the function whose dead letters to remove");
      const seqs = values.seq ? new Set(positiveIntegers(values.seq, "seq")) : undefined;
      const before = timeOption(values.before, "before");
      const yes = values.yes === true;
      // Checked before connecting: a script that forgot --yes learns it at once, and nothing is read.
      if (!yes && !process.stdin.isTTY) {
        throw new UsageError(`dlq purge ${fn.name}: removing dead letters needs --yes when there is no terminal to confirm on`, false);
      }
      return forFunction(env, fn, async (clients, server) => {
        const plan = await planDeadLetterPurge(clients, fn, { seqs, before });
        if (plan.missing.length > 0) {
          const missing = plan.missing.map((seq) => `${plan.dlqStream}#${seq}`).join(", ");
          throw new Error(`no dead letter ${missing} (\`jetfn dlq list ${fn.name}\` shows them); nothing removed`);
        }
        if (plan.letters.length === 0) {
          console.log(`no dead letters of ${fn.name} matched; 0 removed`);
          return 0;
        }
        const count = `${plan.letters.length} dead letter(s) of ${fn.name}`;
        if (!yes && !(await confirm(`Remove ${count} from ${plan.dlqStream} on ${server}? This cannot be undone. [y/N] `))) {
          console.error("nothing removed");
          return 1;
        }
        const removed = await plan.remove();
        console.log(`removed ${removed} dead letter(s) of ${fn.name} from ${plan.dlqStream}`);
        return 0;
      });
    }
  }
}

async function show(clients: NatsClients, fn: CompiledFunction, dlqSeq: number, json: boolean): Promise<number> {
  const found = await getDeadLetter(clients, fn, dlqSeq);
  if (found.kind === "missing") throw new Error(`no dead letter ${found.dlqStream}#${dlqSeq} (\`jetfn dlq list ${fn.name}\` shows them)`);
  if (found.kind === "elsewhere") {
    const owner = found.function ? `a dead letter of ${found.function}` : "not a dead letter of any function";
    throw new Error(`${found.dlqStream}#${dlqSeq} is not a dead letter of ${fn.name} (it is on ${found.subject}: ${owner})`);
  }
  console.log(json ? JSON.stringify(deadLetterJson(found.letter)) : renderDeadLetter(found.letter));
  return 0;
}

/**
 * Runs one function's command connected, every error naming the function and the server
 * (a connection failure names the server itself).
 */
async function forFunction(
  env: CompiledEnv,
  fn: CompiledFunction,
  work: (clients: NatsClients, server: string, log: Logger) => Promise<number>,
): Promise<number> {
  try {
    return await withClients(env, (clients, server, log) => located(fn.name, server, () => work(clients, server, log)));
  } catch (error) {
    if (error instanceof LocatedError) throw error;
    throw new Error(`function ${fn.name}: ${(error as Error).message ?? String(error)}`, { cause: error });
  }
}

class LocatedError extends Error {}

async function located<T>(name: string, server: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw new LocatedError(`function ${name} on ${server}: ${(error as Error).message ?? String(error)}`, { cause: error });
  }
}

function reasonOption(value: string | undefined): DeadLetterReason | undefined {
  if (value === undefined) return undefined;
  if (!(DEAD_LETTER_REASONS as readonly string[]).includes(value)) {
    throw new UsageError(`--reason expects one of ${DEAD_LETTER_REASONS.join(", ")}, got ${value}`);
  }
  return value as DeadLetterReason;
}

function timeOption(value: string | undefined, option: string): Date | undefined {
  if (value === undefined) return undefined;
  try {
    return parseTimeArgument(value);
  } catch (error) {
    throw new UsageError(`--${option} ${(error as Error).message}`);
  }
}

/** One line of `dlq list` (and of `redrive`'s report). */
function describe(letter: DeadLetter): string {
  return `${letter.dlqStream}#${letter.dlqSeq} ${letter.function} ${letter.subject} (${letter.stream}#${letter.streamSeq}) ${letter.failedAt} deliveries=${letter.deliveries} ${letter.reason}: ${letter.error}`;
}
