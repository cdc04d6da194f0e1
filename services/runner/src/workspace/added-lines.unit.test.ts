import { describe, expect, it } from "vitest";
import { AddedLines } from "./added-lines.js";

const read = (chunks: string[], maxHeld?: number) => {
  const out: string[] = [];
  const parser = new AddedLines((t) => out.push(t), maxHeld);
  for (const c of chunks) parser.push(c);
  parser.end();
  return out.join("");
};

const DIFF = ["diff --git a/x b/x", "--- a/x", "+++ b/x", "@@ -1 +1 @@", "-old line", "+new line", "+second", ""].join("\n");

describe("AddedLines", () => {
  it("hands on the added lines only, without headers, however the stream is cut", () => {
    expect(read([DIFF])).toBe("new line\nsecond\n");
    for (let cut = 1; cut < DIFF.length; cut++) expect(read([DIFF.slice(0, cut), DIFF.slice(cut)])).toBe("new line\nsecond\n");
  });

  it("hands on an endless added line in pieces, in order, and nothing of an endless removed line", () => {
    const added = `+${"a".repeat(50)}SECRET${"b".repeat(50)}`;
    const removed = `-${"c".repeat(50)}BASE${"d".repeat(50)}`;
    const diff = `@@ -1 +1 @@\n${removed}\n${added}\n+tail\n`;
    const chunks = diff.match(/.{1,7}/gs) ?? [];
    const out = read(chunks, 16);
    expect(out).toBe(`${added.slice(1)}\ntail\n`);
    expect(out).not.toContain("BASE");
  });

  it("keeps a removed line that starts like an added one out (a '-+' line)", () => {
    expect(read(["-+not added\n+added\n"])).toBe("added\n");
  });
});
