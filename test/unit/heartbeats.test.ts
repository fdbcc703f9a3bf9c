import { describe, expect, it } from "vitest";
import { Heartbeats } from "../../runtime/invoke/heartbeats.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("Heartbeats", () => {
  it("beats every delivery added, each period, until it is removed; one timer for all", async () => {
    const heartbeats = new Heartbeats(10);
    const beats = { a: 0, b: 0 };
    const stopA = heartbeats.add(() => beats.a++);
    const stopB = heartbeats.add(() => beats.b++);
    expect(heartbeats.size).toBe(2);
    await sleep(55);
    expect(beats.a).toBeGreaterThanOrEqual(3);
    expect(beats.b).toBeGreaterThanOrEqual(3);
    stopA();
    const a = beats.a;
    await sleep(35);
    expect(beats.a).toBe(a);
    expect(beats.b).toBeGreaterThan(a - 1);
    stopB();
    expect(heartbeats.size).toBe(0);
  });

  it("removes the same beat added twice once per removal, and close() stops them all", async () => {
    const heartbeats = new Heartbeats(10);
    let count = 0;
    const beat = () => count++;
    const first = heartbeats.add(beat);
    heartbeats.add(beat);
    first();
    expect(heartbeats.size).toBe(1);
    heartbeats.close();
    await sleep(30);
    expect(count).toBe(0);
  });

  it("beats every half ack wait, and never more often than every 100 ms", async () => {
    const fast = Heartbeats.forAckWait(50);
    let count = 0;
    const stop = fast.add(() => count++);
    await sleep(60);
    expect(count).toBe(0);
    await sleep(190);
    expect(count).toBeGreaterThanOrEqual(1);
    expect(count).toBeLessThanOrEqual(2);
    stop();
  });
});
