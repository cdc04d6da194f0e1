import { describe, expect, it } from "vitest";
import { loadRunnerConfig } from "./config.js";

describe("runner config", () => {
  const base = { CODEFLEET_API_TOKEN: "t" };
  it("heartbeats at a third of the ack wait unless told otherwise", () => {
    expect(loadRunnerConfig({ ...base, RUNNER_ACK_WAIT_MS: "5000" }).RUNNER_HEARTBEAT_MS).toBe(1666);
    expect(loadRunnerConfig(base).RUNNER_HEARTBEAT_MS).toBe(10_000);
    expect(loadRunnerConfig({ ...base, RUNNER_ACK_WAIT_MS: "5000", RUNNER_HEARTBEAT_MS: "1000" }).RUNNER_HEARTBEAT_MS).toBe(1000);
  });
  it("runs tasks in Docker unless told otherwise", () => {
    const c = loadRunnerConfig(base);
    expect(c.EXECUTION_DRIVER).toBe("docker");
    expect(c.LLM_GATEWAY_ADVERTISE_URL).toBe("http://host.docker.internal:{port}");
    expect(c.WARM_CONTAINERS_MAX).toBe(4);
  });
  it("refuses the local driver unless the operator accepts that it has no isolation", () => {
    for (const allow of [undefined, "", "false"])
      expect(() => loadRunnerConfig({ ...base, EXECUTION_DRIVER: "local", LOCAL_DRIVER_ALLOW_UNISOLATED: allow })).toThrow(
        /EXECUTION_DRIVER=local runs agents as plain processes on this host with NO isolation.*LOCAL_DRIVER_ALLOW_UNISOLATED=true/,
      );
    expect(() => loadRunnerConfig({ ...base, EXECUTION_DRIVER: "local", LOCAL_DRIVER_ALLOW_UNISOLATED: "maybe" })).toThrow(
      /LOCAL_DRIVER_ALLOW_UNISOLATED/,
    );
    expect(() => loadRunnerConfig({ ...base, EXECUTION_DRIVER: "podman" })).toThrow(/EXECUTION_DRIVER/);
  });
  it("with the local driver: no warm containers, no environment cache, the gateway on localhost", () => {
    const c = loadRunnerConfig({ ...base, EXECUTION_DRIVER: "local", LOCAL_DRIVER_ALLOW_UNISOLATED: "true", WARM_CONTAINERS_MAX: "8" });
    expect(c).toMatchObject({
      EXECUTION_DRIVER: "local",
      WARM_CONTAINERS_MAX: 0,
      ENV_CACHE_MAX_BYTES: 0,
      LLM_GATEWAY_HOST: "127.0.0.1",
      LLM_GATEWAY_ADVERTISE_URL: "http://127.0.0.1:{port}",
    });
    const told = loadRunnerConfig({
      ...base,
      EXECUTION_DRIVER: "local",
      LOCAL_DRIVER_ALLOW_UNISOLATED: "true",
      LLM_GATEWAY_ADVERTISE_URL: "http://192.0.2.1:{port}",
    });
    expect(told.LLM_GATEWAY_ADVERTISE_URL).toBe("http://192.0.2.1:{port}");
  });
  it("refuses a heartbeat so slow that running tasks would be redelivered", () => {
    expect(() => loadRunnerConfig({ ...base, RUNNER_ACK_WAIT_MS: "5000", RUNNER_HEARTBEAT_MS: "5000" })).toThrow(
      /RUNNER_HEARTBEAT_MS \(5000\) must be at most half of RUNNER_ACK_WAIT_MS/,
    );
  });
});
