import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CodefleetError } from "./errors.js";
import { REASON_CODES, reasonOf } from "./reason-codes.js";

/** The codes docs/events.md lists for run.finished: each bullet names its codes before its first colon. */
function documentedCodes(): string[] {
  const doc = readFileSync(new URL("../../docs/events.md", import.meta.url), "utf8");
  const section = doc.slice(doc.indexOf("`reasonCode` values of `run.finished`"));
  const items: string[] = [];
  for (const line of section.split("\n").slice(1)) {
    if (line.startsWith("- ")) items.push(line);
    else if (line.startsWith("  ") && items.length > 0) items[items.length - 1] += line;
    else if (items.length > 0) break; // the list has ended
  }
  return items.flatMap((item) => [...item.slice(0, item.indexOf("`:")).matchAll(/`([a-z_]+)/g)].map((m) => m[1] as string));
}

describe("reason codes", () => {
  it("are each listed once, and docs/events.md lists exactly them for run.finished", () => {
    expect(new Set(REASON_CODES).size).toBe(REASON_CODES.length);
    const documented = documentedCodes();
    expect(new Set(documented).size).toBe(documented.length);
    expect([...documented].sort()).toEqual([...REASON_CODES].sort());
  });
});

describe("reasonOf", () => {
  it("keeps an error's code when it is a reason code, else ends with internal_error and the code in the reason", () => {
    expect(reasonOf(new CodefleetError("egress_unready", "x"), "the proxy did not answer")).toEqual({
      reasonCode: "egress_unready",
      reason: "the proxy did not answer",
    });
    expect(reasonOf(new CodefleetError("run_removed", "x"), "the run is gone")).toEqual({
      reasonCode: "internal_error",
      reason: "the run is gone (run_removed)",
    });
    expect(reasonOf(new Error("boom"), "boom")).toEqual({ reasonCode: "internal_error", reason: "boom" });
  });
});
