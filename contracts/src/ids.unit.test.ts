import { describe, expect, it } from "vitest";
import { isValidTaskId, newEventId, newTaskId, TASK_ID_PATTERN, ulid } from "./ids.js";

const CROCKFORD = /^[0-9A-HJKMNP-TV-Z]{26}$/;

describe("ulid", () => {
  it("encodes the millisecond time in its first ten characters, Crockford base32", () => {
    expect(ulid(0).slice(0, 10)).toBe("0000000000");
    expect(ulid(1).slice(0, 10)).toBe("0000000001");
    expect(ulid(32).slice(0, 10)).toBe("0000000010");
    expect(ulid(2 ** 48 - 1).slice(0, 10)).toBe("7ZZZZZZZZZ");
    expect(ulid(1_700_000_000_000).slice(0, 10)).toBe("01HF7YAT00");
    for (let i = 0; i < 200; i++) expect(ulid()).toMatch(CROCKFORD);
  });

  it("sorts by creation time as a string and does not repeat", () => {
    const ids = [5, 1_000, 1_700_000_000_000, 1_700_000_000_001, 2 ** 47].map((t) => ulid(t));
    expect([...ids].sort()).toEqual(ids);
    const many = new Set(Array.from({ length: 5_000 }, () => ulid(42)));
    expect(many.size).toBe(5_000);
  });
});

describe("task and event ids", () => {
  it("makes task ids that are valid subject tokens and path segments", () => {
    const id = newTaskId(1_700_000_000_000);
    expect(id).toMatch(/^tsk_01HF7YAT00[0-9A-Z]{16}$/);
    expect(isValidTaskId(id)).toBe(true);
    expect(new RegExp(TASK_ID_PATTERN).test(id)).toBe(true);
    expect(newEventId()).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("refuses ids that would break a NATS subject, a path or a URL", () => {
    for (const id of ["", "a.b", "a*", "a>", "a b", "../x", "a/b", "_a", "-a", "a\n", "ü", "a%2e", "x".repeat(129)]) {
      expect(isValidTaskId(id), JSON.stringify(id)).toBe(false);
    }
    for (const id of ["a", "A-1_b", "x".repeat(128), "tsk_01HF7YAT00P54HE9PNMDCGYCHR"]) expect(isValidTaskId(id), id).toBe(true);
  });
});
