import { assertNever } from "@codefleet/contracts";
import { csv, type Logger } from "@codefleet/platform/runtime";
import type { GitRunner } from "@codefleet/repo-pool/git";
import type { RunnerConfig } from "../config.js";
import { DockerDriver } from "./docker-driver.js";
import type { ExecutionDriver } from "./driver.js";
import { KubernetesDriver } from "./kubernetes/index.js";
import { LocalProcessDriver } from "./local-process-driver.js";

export type DriverDeps = {
  /** The runner's hardened git, and who it runs as when the runner is root. */
  git: GitRunner;
  gitOwner: { uid: number; gid: number };
  log: Logger;
  /** PATH of task processes of the local driver (the runner's own). */
  path?: string;
};

/** The execution driver EXECUTION_DRIVER names (config has refused `local` unless the operator allowed it). */
export function createExecutionDriver(config: RunnerConfig, deps: DriverDeps): ExecutionDriver {
  const git = { runner: deps.git, owner: deps.gitOwner };
  switch (config.EXECUTION_DRIVER) {
    case "docker":
      return new DockerDriver({
        socketPath: config.DOCKER_SOCKET,
        git,
        egress: {
          image: config.EGRESS_PROXY_IMAGE,
          network: config.EGRESS_NETWORK,
          extraHosts: csv(config.EGRESS_PROXY_EXTRA_HOSTS),
          deployment: config.CODEFLEET_DEPLOYMENT ?? config.CODEFLEET_NAMESPACE,
        },
        ...(config.ENV_CACHE_MAX_BYTES > 0
          ? {
              environmentCache: {
                helperImage: config.AGENT_IMAGE,
                runnerId: config.RUNNER_ID,
                deployment: config.CODEFLEET_DEPLOYMENT ?? config.CODEFLEET_NAMESPACE,
                maxBytes: config.ENV_CACHE_MAX_BYTES,
                ttlMs: config.ENV_CACHE_TTL_MS,
                log: deps.log,
              },
            }
          : {}),
      });
    case "kubernetes":
      if (!config.kubernetes) throw new Error("EXECUTION_DRIVER=kubernetes without its settings");
      return new KubernetesDriver(config.kubernetes, { git });
    case "local":
      deps.log.warn(
        { driver: "local" },
        "EXECUTION_DRIVER=local: tasks run as plain processes on this host with NO isolation (no network policy, no resource limits beyond timeouts; agents can read this host's files)",
      );
      return new LocalProcessDriver({ git, ...(deps.path ? { path: deps.path } : {}) });
    default:
      return assertNever(config.EXECUTION_DRIVER, "EXECUTION_DRIVER");
  }
}
