import { describe, expect, it } from "vitest";
import { DEFAULT_NAMESPACE, isValidNamespace, topology } from "./topology.js";

describe("topology", () => {
  it("derives every subject, stream and consumer from one namespace", () => {
    const t = topology("team-a");
    expect(t.streams.events).toEqual({ name: "TEAM_A_EVENTS", subjects: ["team-a.events.>"] });
    expect(t.streams.logs.name).toBe("TEAM_A_LOGS");
    expect(t.streams.deadLetters.name).toBe("TEAM_A_DLQ");
    expect(t.subjects.event("tsk_1", "run.finished")).toBe("team-a.events.tsk_1.run.finished");
    expect(t.subjects.eventsOfTask("tsk_1")).toBe("team-a.events.tsk_1.>");
    expect(t.subjects.eventsOfType("task.submitted")).toBe("team-a.events.*.task.submitted");
    expect(t.subjects.logs("tsk_1")).toBe("team-a.logs.tsk_1");
    expect(t.subjects.deadLetter("registry-ingest")).toBe("team-a.dlq.registry-ingest");
    expect(t.subjects.rpc("repo-pool", "allocate")).toBe("team-a.rpc.repo-pool.allocate");
    expect(t.consumers.runnerQueue("acme")).toEqual({ stream: "TEAM_A_QUEUE", durable: "runner-queue-acme", filter: "team-a.queue.acme" });
    expect(t.subjects.queueTenant(t.subjects.queue("acme"))).toBe("acme");
    expect(t.subjects.queueTenant("team-a.queue.acme.x")).toBeUndefined();
    expect(t.subjects.parseIngress(t.subjects.ingress("acme", "ci-bot", "task.submitted"))).toEqual({
      tenant: "acme",
      dispatcher: "ci-bot",
      type: "task.submitted",
    });
    expect(t.subjects.parseIngress("team-a.events.x.task.submitted")).toBeUndefined();
    expect(t.consumers.registryIngest.filter).toBe(t.subjects.allEvents);
    expect(topology().namespace).toBe(DEFAULT_NAMESPACE);
  });

  it("keeps every subject of one namespace out of another's (no prefix overlap)", () => {
    const a = topology("a");
    const ab = topology("ab");
    expect(ab.subjects.allEvents.startsWith(a.subjects.allEvents.slice(0, -1))).toBe(false);
  });

  it("refuses namespaces that are not one lowercase subject token", () => {
    for (const ns of ["", "A", "a.b", "a*", "a>", "a b", "1a", "-a", "_a", "a".repeat(33), "ä"]) {
      expect(isValidNamespace(ns), ns).toBe(false);
      expect(() => topology(ns), ns).toThrow(/invalid namespace/);
    }
    for (const ns of ["a", "codefleet", "t_1-x", `a${"b".repeat(31)}`]) expect(isValidNamespace(ns), ns).toBe(true);
  });
});
