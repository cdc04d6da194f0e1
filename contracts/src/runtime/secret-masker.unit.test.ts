import { describe, expect, it } from "vitest";
import { MASK, SecretMasker } from "./secret-masker.js";

describe("SecretMasker", () => {
  it("masks exact values, longest first, and common token shapes", () => {
    const m = new SecretMasker(["hunter2-password", "hunter2"]);
    expect(m.mask("pw=hunter2-password and hunter2")).toBe(`pw=${MASK} and ${MASK}`);
    expect(m.mask("token ghp_abcdefghijklmnopqrstuvwxyz0123")).toBe(`token ${MASK}`);
    expect(m.mask("key sk-proj-abcdefghijklmnopqrstuvwx")).toBe(`key ${MASK}`);
    expect(m.mask("Authorization: Bearer abcdefghijklmnop1234")).toBe(`Authorization: ${MASK}`);
    expect(m.mask("https://user:s3cret@github.com/x.git")).toBe(`https://${MASK}@github.com/x.git`);
    expect(m.mask("nothing to hide")).toBe("nothing to hide");
  });

  it("ignores values too short to mask safely", () => {
    expect(new SecretMasker(["abc"]).mask("abcdef")).toBe("abcdef");
  });

  it("masks deep values, survives cycles and turns errors into plain objects", () => {
    const m = new SecretMasker(["topsecret"]);
    const cyclic: Record<string, unknown> = { a: "topsecret", list: ["x topsecret"] };
    cyclic.self = cyclic;
    const out = m.maskDeep({ cyclic, err: new Error("failed with topsecret") }) as Record<string, Record<string, unknown>>;
    expect(out.cyclic?.a).toBe(MASK);
    expect(out.cyclic?.self).toBe("[Circular]");
    expect(out.cyclic?.list).toEqual([`x ${MASK}`]);
    expect(out.err?.message).toBe(`failed with ${MASK}`);
  });

  it("extends with per-task secrets without changing the original", () => {
    const base = new SecretMasker(["process-secret"]);
    const task = base.with(["task-secret"]);
    expect(task.mask("process-secret task-secret")).toBe(`${MASK} ${MASK}`);
    expect(base.mask("task-secret")).toBe("task-secret");
  });
});
