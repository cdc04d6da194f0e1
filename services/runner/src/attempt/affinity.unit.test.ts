import { describe, expect, it } from "vitest";
import { AffinityBook, affinityHold, type PeerRunner } from "./affinity.js";

const REPO = "https://git.example.com/acme/app.git";
const peer = (o: Partial<PeerRunner> = {}): PeerRunner => ({ runnerId: "b", warmRepos: [REPO], free: 1, seenAt: 1000, staleAfterMs: 15_000, ...o });
const self = (warm: string[] = []) => ({ runnerId: "a", warmRepos: new Set(warm) });
const task = { taskId: "tsk_1", repoUrl: REPO, enqueuedAt: 1000 };

describe("slot affinity: who takes a queued task", () => {
  it("leaves a task to a runner that has it warm and room, until the wait is over", () => {
    expect(affinityHold(task, self(), [peer()], { waitMs: 1500, now: 1200 })).toBe(1300);
    expect(affinityHold(task, self(), [peer()], { waitMs: 1500, now: 2500 })).toBe(0);
  });

  it("takes it at once when it has it warm itself, nobody else does, or the warm one is full, gone or itself", () => {
    expect(affinityHold(task, self([REPO]), [peer()], { waitMs: 1500, now: 1200 })).toBe(0);
    expect(affinityHold(task, self(), [peer({ warmRepos: ["https://other"] })], { waitMs: 1500, now: 1200 })).toBe(0);
    expect(affinityHold(task, self(), [peer({ free: 0 })], { waitMs: 1500, now: 1200 })).toBe(0);
    expect(affinityHold(task, self(), [peer({ seenAt: -20_000 })], { waitMs: 1500, now: 1200 })).toBe(0);
    expect(affinityHold(task, self(), [peer({ runnerId: "a" })], { waitMs: 1500, now: 1200 })).toBe(0);
    expect(affinityHold({ ...task, repoUrl: undefined }, self(), [peer()], { waitMs: 1500, now: 1200 })).toBe(0);
    expect(affinityHold(undefined, self(), [peer()], { waitMs: 1500, now: 1200 })).toBe(0);
    expect(affinityHold(task, self(), [peer()], { waitMs: 0, now: 1200 })).toBe(0);
  });
});

describe("the affinity book: what is queued where, what the others have warm", () => {
  it("holds a lane whose next task another runner has warm, lets go once that task started or the wait is over", () => {
    let now = 0;
    const book = new AffinityBook({ runnerId: "a", waitMs: 1500, now: () => now });
    book.heard({ runnerId: "b", concurrency: 2, active: 1, intervalMs: 5000, warmRepos: [REPO] });
    book.queued("acme", { taskId: "tsk_1", repoUrl: REPO });
    expect(book.hold("acme", new Set())).toBe(1500);
    expect(book.hold("other-lane", new Set())).toBe(0);
    now = 1000;
    expect(book.hold("acme", new Set())).toBe(500);
    book.started("tsk_1");
    expect(book.hold("acme", new Set())).toBe(0);
    book.queued("acme", { taskId: "tsk_2", repoUrl: REPO });
    now = 3000;
    expect(book.hold("acme", new Set())).toBe(0);
  });

  it("forgets a runner that stops, never counts itself, and counts a full one as no help", () => {
    const book = new AffinityBook({ runnerId: "a", waitMs: 1500, now: () => 0 });
    book.queued("acme", { taskId: "tsk_1", repoUrl: REPO });
    book.heard({ runnerId: "a", concurrency: 2, active: 0, intervalMs: 5000, warmRepos: [REPO] });
    expect(book.hold("acme", new Set())).toBe(0);
    book.heard({ runnerId: "b", concurrency: 2, active: 2, intervalMs: 5000, warmRepos: [REPO] });
    expect(book.hold("acme", new Set())).toBe(0);
    book.heard({ runnerId: "b", concurrency: 2, active: 1, intervalMs: 5000, warmRepos: [REPO] });
    expect(book.hold("acme", new Set())).toBe(1500);
    book.heard({ runnerId: "b", concurrency: 2, active: 1, intervalMs: 5000, stopping: true });
    expect(book.hold("acme", new Set())).toBe(0);
  });
});
