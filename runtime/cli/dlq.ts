import { parseArgs } from "node:util";
import { loadEnv } from "../config/env.ts";
import { loadConfig } from "../config/load.ts";
import { listDeadLetters, redriveDeadLetters, type DeadLetter } from "../nats/dead-letters.ts";
import { positiveIntegers, UsageError, withClients } from "./common.ts";

/** `jetfn dlq list|redrive`; resolves with the exit code. */
export async function deadLetterCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { limit: { type: "string" }, json: { type: "boolean" }, seq: { type: "string", multiple: true } },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const env = loadEnv();
  const config = loadConfig(env.configFile);
  const [name] = parsed.positionals;
  const chosen = name ? config.functions.filter((f) => f.name === name) : config.functions;
  if (name && chosen.length === 0) throw new UsageError(`no function named ${name} in ${config.file}`);
  if (action === "list") {
    const [limit] = positiveIntegers(parsed.values.limit ? [parsed.values.limit] : [], "limit");
    return withClients(env, async (clients) => {
      for (const fn of chosen) {
        for (const letter of await listDeadLetters(clients, fn, limit)) {
          console.log(parsed.values.json ? JSON.stringify(letter) : describe(letter));
        }
      }
      return 0;
    });
  }
  if (action === "redrive") {
    if (!name) throw new UsageError("dlq redrive needs the function whose dead letters to send back");
    const only = parsed.values.seq ? new Set(positiveIntegers(parsed.values.seq, "seq")) : undefined;
    const fn = chosen[0]!;
    return withClients(env, async (clients) => {
      const redriven = await redriveDeadLetters(clients, fn, only);
      for (const letter of redriven) console.log(`redriven ${describe(letter)}`);
      const sharing = new Set(
        redriven.flatMap((letter) => config.functions.filter((f) => f.name !== fn.name && f.subjects.includes(letter.subject)).map((f) => f.name)),
      );
      if (sharing.size > 0) console.error(`note: ${[...sharing].join(", ")} also receive these subjects and will see them again`);
      console.error(`${redriven.length} dead letter(s) of ${fn.name} sent back`);
      return 0;
    });
  }
  throw new UsageError(action ? `unknown dlq action: ${action}` : "dlq needs list or redrive");
}

function describe(letter: DeadLetter): string {
  return `${letter.dlqStream}#${letter.dlqSeq} ${letter.function} ${letter.subject} (${letter.stream}#${letter.streamSeq}) ${letter.failedAt} deliveries=${letter.deliveries} ${letter.reason}: ${letter.error}`;
}
