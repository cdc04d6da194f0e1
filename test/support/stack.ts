import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort, waitFor } from "./processes.js";
import { REPO_ROOT } from "./services.js";

const execFileP = promisify(execFile);

/** The Anthropic key the e2e stack's runner holds (scripted servers only ever see it). */
export const E2E_ANTHROPIC_KEY = "sk-ant-e2e-scripted-0a1b2c3d4e5f";

export type Stack = {
  project: string;
  registryUrl: string;
  artifactStoreUrl: string;
  jaegerUrl: string;
  token: string;
  env: Record<string, string>;
  /** Runs deploy/stack.sh with this stack's project and settings. */
  stack(...args: string[]): Promise<string>;
  down(): Promise<void>;
};

/**
 * Brings up docker-compose.yml under its own project name, data directory and host ports
 * (deploy/stack.sh, so the offline images are used when they were built), and waits until healthy.
 * `cluster`: with the overlay of a three-node NATS cluster and two runner hosts (deploy/cluster/cluster.sh).
 */
export async function startStack(opts: { cluster?: boolean } = {}): Promise<Stack> {
  const project = `cf${opts.cluster ? "cl" : "e2e"}${Math.random().toString(36).slice(2, 8)}`;
  const dataDir = mkdtempSync(join(tmpdir(), "cf-stack-"));
  const [registry, artifacts, jaeger, gateway, gatewayB] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  // the cluster overlay (a three-node NATS cluster, two runner hosts) goes through its own script
  const script = opts.cluster ? "deploy/cluster/cluster.sh" : "deploy/stack.sh";
  const token = "e2e-token-0123456789";
  const env: Record<string, string> = {
    COMPOSE_PROJECT_NAME: project,
    CODEFLEET_DATA_DIR: dataDir,
    REGISTRY_PORT: String(registry),
    ARTIFACT_STORE_PORT: String(artifacts),
    JAEGER_UI_PORT: String(jaeger),
    LLM_GATEWAY_PORT: String(gateway),
    LLM_GATEWAY_PORT_B: String(gatewayB),
    CODEFLEET_API_TOKENS: token,
    CODEFLEET_API_TOKEN: token,
    RUNNER_ID: `${project}-runner`,
    ARTIFACT_STORE_PUBLIC_URL: `http://127.0.0.1:${artifacts}`,
    RUNNER_ACK_WAIT_MS: "5000",
    LOG_LEVEL: "error",
    // agent tests talk to scripted model servers on the host: the operator lets the keys go there
    ANTHROPIC_API_KEY: E2E_ANTHROPIC_KEY,
    CODEFLEET_SECRET_ENDPOINTS: JSON.stringify({
      OPENAI_API_KEY: ["host.docker.internal"],
      ANTHROPIC_API_KEY: ["host.docker.internal"],
    }),
  };
  const stack = async (...args: string[]) => {
    const { stdout } = await execFileP("bash", [join(REPO_ROOT, script), ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      maxBuffer: 64 * 1024 * 1024,
      timeout: 900_000,
    });
    return stdout;
  };
  try {
    await stack("up");
  } catch (err) {
    const logs = await stack("logs", "--tail=80").catch(() => "");
    await stack("down").catch(() => undefined);
    throw new Error(`stack did not come up: ${(err as Error).message}\n${logs}`);
  }
  return {
    project,
    registryUrl: `http://127.0.0.1:${registry}`,
    artifactStoreUrl: `http://127.0.0.1:${artifacts}`,
    jaegerUrl: `http://127.0.0.1:${jaeger}`,
    token,
    env,
    stack,
    down: async () => {
      await stack("down").catch(() => undefined);
      // slots are written by containers (uid 1000 / root): remove through a container-free path
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Calls the stack's registry API with its token; the body parsed as JSON. */
export async function stackApi<T>(stack: Stack, path: string, init: RequestInit = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(`${stack.registryUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${stack.token}`, "content-type": "application/json", ...(init.headers ?? {}) },
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** Runs git in the stack's git server on the sample repository (Compose v2 and 1.29 name containers differently). */
export async function stackGit(stack: Stack, ...args: string[]): Promise<string> {
  const run = (container: string) => execFileP("docker", ["exec", container, "git", "-C", "/srv/git/sample.git", ...args]);
  const { stdout } = await run(`${stack.project}_git-server_1`).catch(() => run(`${stack.project}-git-server-1`));
  return stdout.trim();
}

const FINAL_STATUSES = ["succeeded", "failed", "timed_out", "canceled"];

/**
 * Waits until every task is in a final status and returns them in `ids` order. On timeout it throws
 * with what `report` says about the unfinished ones (their events, the services' logs).
 */
export async function waitForTasks<T extends { status: string }>(
  stack: Stack,
  ids: readonly string[],
  timeoutMs: number,
  report: (unfinished: string[]) => Promise<string>,
): Promise<T[]> {
  const finished = new Map<string, T>();
  await waitFor(
    `all ${ids.length} tasks to finish`,
    async () => {
      for (const id of ids) {
        if (finished.has(id)) continue;
        const r = await stackApi<T>(stack, `/v1/tasks/${id}`).catch(() => undefined);
        if (r?.body && FINAL_STATUSES.includes(r.body.status)) finished.set(id, r.body);
      }
      return finished.size === ids.length;
    },
    timeoutMs,
    1000,
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await report(ids.filter((id) => !finished.has(id)))}`);
  });
  return ids.map((id) => finished.get(id) as T);
}
