import { loadEnv } from "../config/env.ts";
import { loadConfig } from "../config/load.ts";
import { parseCompletionRecord, parseStepRecord } from "../contracts/steps.ts";
import { forgetRun, type RunRecord, readRunRecords } from "../nats/steps-bucket.ts";
import type { CommandRun } from "./command-line.ts";
import type { COMMANDS } from "./commands.ts";
import { confirm, UsageError, withClients } from "./common.ts";

/**
 * `jetfn steps show <function> <run id>`: a run's recorded steps (name, state, when, size)
 * and its completion record. `jetfn steps forget <function> <run id>`: removes them, so the
 * run's next delivery runs every step again.
 */
export async function stepsCommand(line: CommandRun<typeof COMMANDS>): Promise<number> {
  const [fn, runId, ...rest] = line.positionals;
  const action = line.command === "steps show" ? "show" : "forget";
  if (!fn || !runId || rest.length > 0) throw new UsageError(`steps ${action} needs <function> <run id>`);
  const env = loadEnv();
  const config = loadConfig(env.configFile);
  if (!config.functions.some((f) => f.name === fn)) throw new UsageError(`no function named ${fn} in ${config.file}`, false);
  const values = line.values as { json?: boolean; yes?: boolean };
  if (action === "forget" && !values.yes && !process.stdin.isTTY) {
    throw new UsageError(`steps forget ${fn} ${runId}: removing step records needs --yes when there is no terminal to confirm on`, false);
  }
  return withClients(env, async ({ nc }, server) => {
    const records = (await readRunRecords(nc, fn, runId)) ?? [];
    if (action === "show") {
      if (values.json) {
        for (const record of records) console.log(JSON.stringify(recordJson(record)));
      } else if (records.length === 0) {
        console.log(`no step records of run ${runId} of ${fn} on ${server}`);
      } else {
        for (const record of records) console.log(describe(record));
      }
      return 0;
    }
    if (records.length === 0) {
      console.log(`no step records of run ${runId} of ${fn} on ${server}: nothing to forget`);
      return 0;
    }
    const running = records.filter((record) => parseStepRecord(record.value)?.state === "running").length;
    const question = `Forget ${records.length} record(s) of run ${runId} of ${fn} on ${server}${running ? ` (${running} step(s) running now)` : ""}? Its next delivery runs every step again. [y/N] `;
    if (!values.yes && !(await confirm(question))) {
      console.log("nothing forgotten");
      return 1;
    }
    const forgotten = await forgetRun(nc, fn, runId);
    console.log(`forgot ${forgotten} record(s) of run ${runId} of ${fn}: its next delivery runs every step again`);
    return 0;
  });
}

/** One line: `charge  done  2024-05-01T12:00:00.000Z  42 bytes`, or the completion record. */
function describe(record: RunRecord): string {
  const json = recordJson(record);
  const when = json.at ?? json.startedAt;
  const extra =
    json.state === "running"
      ? ` owner=${json.owner}`
      : json.state === "failed"
        ? ` error=${JSON.stringify(json.error)}`
        : json.state === "done" && json.result !== undefined
          ? ` result=${truncate(JSON.stringify(json.result))}`
          : "";
  return `${record.step ?? "(completed)"}  ${json.state}  ${when ?? "?"}  ${record.size} bytes  expires ${json.expiresAt ?? "?"}${extra}`;
}

/** A record as `--json` prints it: times as ISO 8601. */
function recordJson(record: RunRecord): Record<string, unknown> & { state: string } {
  const step = parseStepRecord(record.value);
  const completion = step ? undefined : parseCompletionRecord(record.value);
  const fields = (step ?? completion ?? {}) as Record<string, unknown>;
  const iso = (value: unknown) => (typeof value === "number" ? new Date(value).toISOString() : undefined);
  return {
    ...(record.step !== undefined ? { step: record.step } : { completion: true }),
    ...fields,
    state: (fields.state as string | undefined) ?? "unreadable",
    ...(fields.at !== undefined ? { at: iso(fields.at) } : {}),
    ...(fields.startedAt !== undefined ? { startedAt: iso(fields.startedAt) } : {}),
    ...(fields.expiresAt !== undefined ? { expiresAt: iso(fields.expiresAt) } : {}),
    size: record.size,
  };
}

function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
