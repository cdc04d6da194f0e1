import { describe, expect, it } from "vitest";
import { LaneScheduler } from "./lanes.js";

function drain(s: LaneScheduler, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const lane = s.take();
    if (!lane) break;
    out.push(lane);
  }
  return out;
}

describe("LaneScheduler", () => {
  it("alternates between a tenant with many queued tasks and one with few", () => {
    const s = new LaneScheduler();
    s.counted("a", 200);
    expect(drain(s, 3)).toEqual(["a", "a", "a"]);
    for (let i = 0; i < 3; i++) s.published("b");
    // b was never served: it goes first, then the two take turns until b is empty
    expect(drain(s, 8)).toEqual(["b", "a", "b", "a", "b", "a", "a", "a"]);
  });

  it("gives every lane with work a turn before any lane gets a second", () => {
    const s = new LaneScheduler();
    s.counted("c", 5);
    s.counted("a", 5);
    s.counted("b", 5);
    const first = drain(s, 3);
    expect(new Set(first)).toEqual(new Set(["a", "b", "c"]));
    expect(first).toEqual(["a", "b", "c"]); // ties broken by name, alike on every replica
    expect(drain(s, 3)).toEqual(["a", "b", "c"]);
  });

  it("skips a lane held for others without using up its turn or its work", () => {
    const s = new LaneScheduler();
    s.counted("a", 2);
    s.counted("b", 2);
    expect(s.take((lane) => lane === "a")).toBe("b");
    expect(s.take((lane) => lane === "a")).toBe("b");
    expect(s.take((lane) => lane === "a")).toBeUndefined();
    // released: a's work is all still there, and a goes first (never served)
    expect(drain(s, 3)).toEqual(["a", "a"]);
  });

  it("reserves what it hands out: a lane with one message is pulled by one worker only", () => {
    const s = new LaneScheduler();
    s.published("a");
    expect(s.take()).toBe("a");
    expect(s.take()).toBeUndefined();
  });

  it("forgets a belief an empty pull disproves, and the server's count replaces guesses", () => {
    const s = new LaneScheduler();
    s.published("a");
    s.published("a");
    s.empty("a");
    expect(s.take()).toBeUndefined();
    s.counted("a", 1);
    expect(s.take()).toBe("a");
    expect(s.snapshot()).toEqual({ a: 0 });
  });

  it("probes occupied lanes in turn (messages waiting for a redelivery), never vacant ones", () => {
    const s = new LaneScheduler();
    expect(s.probe()).toBeUndefined();
    s.occupied("a");
    s.occupied("b");
    expect([s.probe(), s.probe(), s.probe()]).toEqual(["a", "b", "a"]);
    s.vacant("a");
    expect([s.probe(), s.probe()]).toEqual(["b", "b"]);
  });
});
