/**
 * The ticker on a real nats-server, where replicas' clocks disagree at the very start of a
 * schedule. One replica, its clock 5 s ahead, finds no tick yet and anchors at its own now;
 * meanwhile a replica whose clock is right publishes the current second's tick. The fast
 * replica's publish is refused (expected last sequence): it must go on from that tick, not
 * from its own now, or the ticks between the two clocks' nows never run (seen on CI as a
 * first tick followed by a gap of four).
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import type { CompiledFunction, CompiledSchedule } from "../../runtime/config/types.ts";
import { SCHEDULE_STREAM, ScheduleHeader, scheduleSubject } from "../../runtime/contracts/schedule.ts";
import { ensureScheduleStream } from "../../runtime/nats/provision.ts";
import { Ticker } from "../../runtime/nats/ticker.ts";
import { createLogger } from "../../runtime/telemetry/logger.ts";
import { useNats } from "../support/project.ts";
import { waitFor } from "../support/wait-for.ts";

const nats = useNats();
const log = createLogger("silent");

function scheduledFunction(name: string): CompiledFunction & { readonly schedule: CompiledSchedule } {
  const schedule: CompiledSchedule = { cron: "* * * * * *", timezone: "UTC", catchUp: "all", maxCatchUp: 100, payload: {} };
  return { name, schedule } as CompiledFunction & { readonly schedule: CompiledSchedule };
}

async function tickTimes(fn: string): Promise<number[]> {
  const times: number[] = [];
  const info = await nats.jsm.streams.info(SCHEDULE_STREAM, { subjects_filter: scheduleSubject(fn) });
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const message = await nats.jsm.streams.getMessage(SCHEDULE_STREAM, { seq }).catch(() => null);
    if (message?.subject === scheduleSubject(fn)) times.push(Number(message.header?.get(ScheduleHeader.ScheduledTime)));
  }
  return times;
}

describe("ticker", () => {
  // Read 1 is the fast replica's first look (it then anchors at its now); read 3 is its look
  // just before publishing its first tick, whose publish is then refused.
  it.each([
    { read: 1, when: "it anchors" },
    { read: 3, when: "it publishes its first tick" },
  ])("a replica whose clock runs ahead goes on from the tick a slower replica published as $when, leaving no gap", async ({ read }) => {
    await ensureScheduleStream(nats.jsm, log);
    const fn = scheduledFunction(`skewed-start-${read}`);
    const subject = scheduleSubject(fn.name);
    let firstTick = 0;
    // The slower replica's tick lands right after the fast one read the stream (and found nothing).
    let reads = 0;
    const jsm = {
      streams: {
        getMessage: async (...args: Parameters<JetStreamManager["streams"]["getMessage"]>) => {
          const found = await nats.jsm.streams.getMessage(...args);
          if (++reads === read) {
            expect(found).toBeNull();
            firstTick = Math.floor(Date.now() / 1000) * 1000;
            const h = natsHeaders();
            h.set(ScheduleHeader.ScheduledTime, String(firstTick));
            h.set(ScheduleHeader.Schedule, "* * * * * * UTC");
            await nats.js.publish(subject, "{}", { headers: h, msgID: `tick:${fn.name}:${firstTick}`, expect: { lastSubjectSequence: 0 } });
          }
          return found;
        },
      },
    } as unknown as JetStreamManager;
    const ticker = new Ticker({ js: nats.js, jsm, fn, log, now: () => Date.now() + 5000, counted: () => {}, next: () => {} });
    await ticker.start();
    try {
      await waitFor(async () => (await tickTimes(fn.name)).some((at) => at >= firstTick + 7000), {
        timeout: 10_000,
        interval: 200,
        message: "the fast replica published ticks 7 s past the first",
      });
    } finally {
      await ticker.stop();
    }
    const times = await tickTimes(fn.name);
    expect(times[0]).toBe(firstTick);
    // One tick a second from the first, none missing, none twice.
    expect(times).toEqual(times.map((_, i) => firstTick + i * 1000));
  });
});
