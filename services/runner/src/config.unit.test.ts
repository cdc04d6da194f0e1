import { describe, expect, it } from "vitest";
import { loadRunnerConfig } from "./config.js";

describe("runner config", () => {
  const base = { CODEFLEET_API_TOKEN: "t" };
  it("heartbeats at a third of the ack wait unless told otherwise", () => {
    expect(loadRunnerConfig({ ...base, RUNNER_ACK_WAIT_MS: "5000" }).RUNNER_HEARTBEAT_MS).toBe(1666);
    expect(loadRunnerConfig(base).RUNNER_HEARTBEAT_MS).toBe(10_000);
    expect(loadRunnerConfig({ ...base, RUNNER_ACK_WAIT_MS: "5000", RUNNER_HEARTBEAT_MS: "1000" }).RUNNER_HEARTBEAT_MS).toBe(1000);
  });
  it("refuses a heartbeat so slow that running tasks would be redelivered", () => {
    expect(() => loadRunnerConfig({ ...base, RUNNER_ACK_WAIT_MS: "5000", RUNNER_HEARTBEAT_MS: "5000" })).toThrow(
      /RUNNER_HEARTBEAT_MS \(5000\) must be at most half of RUNNER_ACK_WAIT_MS/,
    );
  });
});
