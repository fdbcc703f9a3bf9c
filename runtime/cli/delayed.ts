import type { CompiledEnv } from "../config/types.ts";
import { parseDelayedId } from "../contracts/delayed.ts";
import { cancelDelayed, listDelayed } from "../nats/delayed-stream.ts";
import { UsageError, withClients } from "./common.ts";

/** `jetfn delayed list`: the waiting events, soonest due first. */
export function listDelayedCommand(env: CompiledEnv, options: { subject?: string; limit?: string; json?: boolean }): Promise<number> {
  const limit = options.limit === undefined ? 100 : Number(options.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit takes a whole number of at least 1, got ${options.limit}`);
  return withClients(env, async ({ jsm }) => {
    const { events, total } = await listDelayed(jsm, { ...(options.subject ? { subject: options.subject } : {}), limit });
    for (const event of events) {
      const due = new Date(event.deliverAt).toISOString();
      if (options.json) {
        const data = Buffer.from(event.data).toString("base64");
        console.log(
          JSON.stringify({
            id: event.id,
            target: event.target,
            deliverAt: due,
            scheduledAt: new Date(event.scheduledAt).toISOString(),
            headers: event.headers,
            data,
          }),
        );
      } else {
        console.log(`${event.id}  ${due}  ${event.target}  ${event.data.length} bytes`);
      }
    }
    if (!options.json) console.log(`${total} waiting${total > events.length ? `, ${events.length} shown` : ""}`);
    return 0;
  });
}

/** `jetfn delayed cancel <id>...`: each is deleted; one already delivered or unknown is said so (exit 1). */
export function cancelDelayedCommand(env: CompiledEnv, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) throw new UsageError("delayed cancel needs at least one <id>");
  for (const id of ids) if (parseDelayedId(id) === undefined) throw new UsageError(`not a delayed event's id: ${id}`);
  return withClients(env, async ({ jsm }) => {
    let missing = 0;
    for (const id of ids) {
      if (await cancelDelayed(jsm, id)) console.log(`cancelled ${id}`);
      else {
        missing++;
        console.error(`${id}: no such delayed event (delivered already, cancelled, or never scheduled)`);
      }
    }
    return missing > 0 ? 1 : 0;
  });
}
