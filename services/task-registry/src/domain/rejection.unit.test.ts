import { createEvent, parseEvent, ValidationError } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { rejectionFor, submittedTaskIdOf } from "./rejection.js";

const ns = "codefleet";
const subject = (taskId: string, type = "task.submitted") => `${ns}.events.${taskId}.${type}`;

/** The error parseEvent throws for `raw`. */
function errorOf(raw: unknown): unknown {
  try {
    parseEvent(raw);
  } catch (err) {
    return err;
  }
  throw new Error("expected the event to be invalid");
}

const valid = createEvent("task.submitted", {
  taskId: "tsk_BUS1",
  producer: "dispatcher",
  data: {
    spec: { repo: { url: "https://git.example.com/a.git" }, title: "t", prompt: "p", agent: { kind: "script", steps: [{ run: "true" }] } },
    submittedVia: "bus",
  },
});

describe("task.rejected for an invalid bus submission", () => {
  it("reads the task id from a task.submitted subject only", () => {
    expect(submittedTaskIdOf(subject("tsk_A"), ns)).toBe("tsk_A");
    expect(submittedTaskIdOf(subject("tsk_A", "run.started"), ns)).toBeUndefined();
    expect(submittedTaskIdOf(`other.events.tsk_A.task.submitted`, ns)).toBeUndefined();
    expect(submittedTaskIdOf(subject("a.b"), ns)).toBeUndefined();
    expect(submittedTaskIdOf(subject(""), ns)).toBeUndefined();
  });

  it("records the validation errors, who and which tenant, with a stable id", () => {
    const raw = {
      ...valid,
      data: { ...valid.data, submittedBy: "dispatcher-7", tenant: "team-a", spec: { ...valid.data.spec, agent: { kind: "telepathy" } } },
    };
    const err = errorOf(raw);
    const r = rejectionFor(raw, subject("tsk_BUS1"), err, { namespace: ns, producer: "task-registry" });
    expect(r).toBeDefined();
    expect(r?.taskId).toBe("tsk_BUS1");
    expect(r?.data).toMatchObject({
      code: "invalid_event_data",
      submittedVia: "bus",
      submittedBy: "dispatcher-7",
      tenant: "team-a",
      title: "t",
      repoUrl: "https://git.example.com/a.git",
      rejectedEventId: valid.id,
    });
    expect(r?.data.errors.length).toBeGreaterThan(0);
    expect(r?.data.errors[0]?.path).toMatch(/^\/data\/spec\/agent/);
    // the same message twice is one rejection
    expect(rejectionFor(raw, subject("tsk_BUS1"), err, { namespace: ns, producer: "task-registry" })?.id).toBe(r?.id);
    // a valid event of the catalogue
    expect(parseEvent(r).type).toBe("task.rejected");
  });

  it("masks and bounds what it copies, and never copies repository credentials", () => {
    const token = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    const raw = {
      ...valid,
      data: {
        ...valid.data,
        spec: {
          ...valid.data.spec,
          title: `deploy with ${token} ${"x".repeat(5000)}`,
          repo: { url: `https://user:${token}@h.example/a.git` },
        },
        extra: "y".repeat(100),
        tenant: "Not A Tenant",
      },
      version: 9,
    };
    const r = rejectionFor(raw, subject("tsk_BUS2"), errorOf(raw), { namespace: ns, producer: "task-registry" });
    const text = JSON.stringify(r);
    expect(text).not.toContain(token);
    expect(r?.data.title?.length).toBeLessThanOrEqual(500);
    expect(r?.data.repoUrl).toBe("https://h.example/a.git");
    expect(r?.data.code).toBe("unknown_event_version");
    expect(r?.data.tenant).toBeUndefined();
  });

  it("keeps at most 20 errors, and copes with anything that is not an object", () => {
    const issues = Array.from({ length: 50 }, (_, i) => ({ path: `/data/x${i}`, message: "bad" }));
    const many = rejectionFor({}, subject("tsk_BUS3"), new ValidationError("invalid_envelope", "bad", issues), {
      namespace: ns,
      producer: "p",
    });
    expect(many?.data.errors).toHaveLength(20);
    for (const raw of [null, 42, "text", [1, 2]]) {
      const r = rejectionFor(raw, subject("tsk_BUS4"), errorOf(raw), { namespace: ns, producer: "p" });
      expect(r?.data.code).toBe("invalid_envelope");
      expect(r?.data.title).toBeUndefined();
    }
    expect(rejectionFor({}, subject("tsk_BUS5", "run.finished"), new Error("x"), { namespace: ns, producer: "p" })).toBeUndefined();
  });
});
