import { CodefleetError } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { platformRetry } from "./platform-retry.js";

describe("platformRetry", () => {
  it("goes through a hiccup: fails twice, then succeeds", async () => {
    let calls = 0;
    const retried: string[] = [];
    const out = await platformRetry(
      "publish",
      async () => {
        calls++;
        if (calls < 3) throw new Error("connection closed");
        return "ok";
      },
      { withinMs: 10_000, onRetry: (_what, error) => retried.push(error) },
    );
    expect(out).toBe("ok");
    expect(retried).toEqual(["connection closed", "connection closed"]);
  });

  it("does not retry an error that says it never succeeds", async () => {
    let calls = 0;
    const never = new CodefleetError("invalid", "bad request", { retry: { kind: "never" } });
    await expect(
      platformRetry(
        "x",
        async () => {
          calls++;
          throw never;
        },
        { withinMs: 10_000 },
      ),
    ).rejects.toBe(never);
    expect(calls).toBe(1);
  });

  it("gives up when the next try would be past its time", async () => {
    let calls = 0;
    await expect(
      platformRetry(
        "x",
        async () => {
          calls++;
          throw new Error("down");
        },
        { withinMs: 300 },
      ),
    ).rejects.toThrow("down");
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(calls).toBeLessThanOrEqual(3);
  });
});
