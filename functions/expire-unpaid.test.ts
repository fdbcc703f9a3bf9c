import { invoke } from "jetfn/testing";
import { describe, expect, it } from "vitest";
import expireUnpaid from "./expire-unpaid.ts";

describe("expire-unpaid", () => {
  it("expires what was unpaid 30 minutes before the tick, whatever time it runs", async () => {
    const tick = { scheduledTime: "2030-01-01T10:00:00.000Z", olderThanMinutes: 30 };
    // A tick carries its time in Jetfn-Scheduled-Time too: that is what ctx.schedule reads.
    const headers = { "Jetfn-Scheduled-Time": String(Date.parse(tick.scheduledTime)) };
    const result = await invoke(expireUnpaid, tick, { function: "expire-unpaid", headers });
    expect(result.settlement).toEqual({ action: "ack", output: { cutoff: "2030-01-01T09:30:00.000Z" } });
    expect(result.logs).toEqual([
      expect.objectContaining({ level: "info", cutoff: "2030-01-01T09:30:00.000Z", late_ms: expect.any(Number) }),
    ]);
  });
});
