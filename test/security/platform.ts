import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TaskSpec, TaskView } from "@codefleet/contracts";
import {
  createTestDatabase,
  createTestRepo,
  freePort,
  type GitServer,
  git,
  removeDataDir,
  type ServiceProcess,
  spawnService,
  startGitDaemon,
  type TestRepo,
  testNamespace,
  waitFor,
  waitForHttp,
} from "../support/index.js";

/**
 * The four services as real processes (their main.ts, as deployed), a git daemon serving the
 * remotes, and a marker directory: every payload an attacker plants writes a file there if it
 * ever runs on the host (in the runner, in repo-pool, anywhere outside a task container, where
 * the directory does not exist).
 */
export type Platform = {
  registryUrl: string;
  token: string;
  markers: string;
  dataDir: string;
  remotes: string;
  daemon: GitServer;
  repo: TestRepo;
  env: Record<string, string>;
  procs: Map<string, ServiceProcess>;
  submit(spec: TaskSpec): Promise<Response>;
  submitOk(spec: TaskSpec): Promise<string>;
  finished(id: string, timeoutMs?: number): Promise<TaskView>;
  artifactText(view: TaskView, name: string): Promise<string | undefined>;
  markersFound(): string[];
  remoteState(bare?: string): Promise<RemoteState>;
  stop(): Promise<void>;
};

export type RemoteState = { refs: Map<string, string>; configHash: string; hooks: string[] };

export const SECRET = "sk-live-SECURITY-7a6b5c4d3e2f1a0b";
/** A secret whose URL encoding differs from its plain form. */
export const SPECIAL_SECRET = "pa55 w0rd/with+special&chars=1";
export const FOREIGN_GIT_TOKEN = "ghp_foreignHostToken0123456789abcdefABCD";

export async function startPlatform(opts: { databaseUrl: string; natsUrl: string; extraEnv?: Record<string, string> }): Promise<Platform> {
  const root = mkdtempSync(join(tmpdir(), "cf-security-"));
  chmodSync(root, 0o755);
  const markers = join(root, "markers");
  mkdirSync(markers, { mode: 0o777 });
  chmodSync(markers, 0o777);
  const dataDir = join(root, "data");
  mkdirSync(dataDir, { mode: 0o755 });
  const repo = await createTestRepo({ "README.md": "# sample\n", "src/app.sh": "#!/bin/sh\necho app\n" });
  const daemon = await startGitDaemon(repo.root);
  const db = await createTestDatabase(opts.databaseUrl);
  const token = "security-test-token";
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    NATS_URL: opts.natsUrl,
    CODEFLEET_NAMESPACE: testNamespace(),
    CODEFLEET_API_TOKENS: token,
    CODEFLEET_API_TOKEN: token,
    LOG_LEVEL: "warn",
    OTEL_TRACES_EXPORTER: "none",
    OTEL_METRICS_EXPORTER: "none",
    // The operator's policy: no file:// at all, plain http to loopback allowed (for the 401 test),
    // and a git token configured for another host only.
    CODEFLEET_REPO_HTTP_HOSTS: "127.0.0.1",
    GIT_PASSWORD: FOREIGN_GIT_TOKEN,
    GIT_CREDENTIAL_HOSTS: "git.example.com",
    ...opts.extraEnv,
  };
  const procs = new Map<string, ServiceProcess>();
  const start = async (name: string, mainTs: string, extra: Record<string, string>) => {
    const port = await freePort();
    const proc = spawnService(mainTs, { ...env, ...extra, PORT: String(port), HOST: "127.0.0.1", OTEL_SERVICE_NAME: name });
    procs.set(name, proc);
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, 90_000, proc);
    return `http://127.0.0.1:${port}`;
  };
  const artifactStoreUrl = await start("artifact-store", "services/artifact-store/src/main.ts", {
    ARTIFACT_DATA_DIR: join(dataDir, "artifacts"),
  });
  env.ARTIFACT_STORE_URL = artifactStoreUrl;
  const [registryUrl] = await Promise.all([
    start("task-registry", "services/task-registry/src/main.ts", { ARTIFACT_STORE_PUBLIC_URL: artifactStoreUrl }),
    start("repo-pool", "services/repo-pool/src/main.ts", {
      REPO_POOL_DATA_DIR: join(dataDir, "repo-pool"),
      // one slot per repository: the next task on a repository gets the slot the last one used
      MAX_SLOTS_PER_REPO: "1",
      REAPER_INTERVAL_MS: "500",
      // a small workspace disk, so that filling it is quick
      SLOT_DISK_QUOTA_BYTES: String(64 * 1024 * 1024),
    }),
    start("runner", "services/runner/src/main.ts", {
      RUNNER_ID: `security-${testNamespace()}`,
      AGENT_IMAGE: process.env.CODEFLEET_AGENT_IMAGE ?? "codefleet/agent:latest",
      RUNNER_HEARTBEAT_MS: "1000",
      RUNNER_ACK_WAIT_MS: "6000",
      NO_CAPACITY_RETRY_MS: "60000",
      CODEFLEET_SECRET_API_TOKEN: SECRET,
      CODEFLEET_SECRET_SPECIAL: SPECIAL_SECRET,
      MAX_LOG_BYTES: String(2 * 1024 * 1024),
    }),
  ]);

  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${registryUrl}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...(init.headers ?? {}) },
    });

  const platform: Platform = {
    registryUrl: registryUrl as string,
    token,
    markers,
    dataDir,
    remotes: repo.root,
    daemon,
    repo,
    env,
    procs,
    submit: (spec) => api("/v1/tasks", { method: "POST", body: JSON.stringify(spec) }),
    async submitOk(spec) {
      const res = await platform.submit(spec);
      if (res.status >= 300) throw new Error(`submission refused: ${res.status} ${await res.text()}`);
      return ((await res.json()) as TaskView).id;
    },
    async finished(id, timeoutMs = 120_000) {
      let view: TaskView | undefined;
      await waitFor(
        `task ${id} to finish with its artifacts`,
        async () => {
          const res = await api(`/v1/tasks/${id}`);
          if (!res.ok) return false;
          view = (await res.json()) as TaskView;
          // a submission the registry's admission refused never ran: it has no artifacts
          if (view.status === "rejected") return true;
          return (
            ["succeeded", "failed", "timed_out", "canceled"].includes(view.status) && view.artifacts.some((a) => a.name === "task.log")
          );
        },
        timeoutMs,
        250,
      );
      return view as TaskView;
    },
    async artifactText(view, name) {
      // artifacts are stored in sequence: the one asked for may land just after the log
      let found = view.artifacts.find((x) => x.name === name);
      for (let i = 0; !found && i < 40; i++) {
        await new Promise((r) => setTimeout(r, 250));
        const res = await api(`/v1/tasks/${view.id}`);
        found = ((await res.json()) as TaskView).artifacts.find((x) => x.name === name);
      }
      if (!found) return undefined;
      const res = await fetch(`${artifactStoreUrl}/v1/artifacts/${found.artifactId}/content`, {
        headers: { authorization: `Bearer ${token}` },
      });
      return res.ok ? res.text() : undefined;
    },
    markersFound: () => readdirSync(markers),
    async remoteState(bare = repo.bare) {
      const refs = new Map(
        (await git(bare, "for-each-ref", "--format=%(refname) %(objectname)"))
          .split("\n")
          .filter(Boolean)
          .map((l) => l.split(" ") as [string, string]),
      );
      const configHash = createHash("sha256")
        .update(readFileSync(join(bare, "config")))
        .digest("hex");
      const hooks = readdirSync(join(bare, "hooks")).filter((h) => !h.endsWith(".sample"));
      return { refs, configHash, hooks };
    },
    async stop() {
      for (const p of procs.values()) await p.kill("SIGTERM").catch(() => undefined);
      await daemon.stop();
      await db.drop();
      repo.cleanup();
      removeDataDir(root);
    },
  };
  return platform;
}

/** What a task on the sample repository looks like, with script steps of the attacker's choosing. */
export function scriptTask(p: Platform, steps: string[], extra: Partial<TaskSpec> = {}): TaskSpec {
  return {
    repo: { url: p.daemon.url("sample.git"), ref: "main" },
    title: "security probe",
    prompt: "do as the steps say",
    agent: { kind: "script", steps: steps.map((run) => ({ run })) },
    ...extra,
  };
}

/**
 * The next task on the same slot: it must find a clean tree and a fresh git of its own, with
 * nothing an earlier attempt planted (hooks, config, attributes, a .git of its own making).
 */
export const PROBE_STEPS = [
  [
    "set -e",
    'test -z "$(git status --porcelain)" || { git status --porcelain; echo "tree not clean"; exit 1; }',
    'test -z "$(git config --get core.hooksPath || true)"',
    'test -z "$(git config --get core.fsmonitor || true)"',
    'test -z "$(git config --get-regexp "^(url|filter|include|includeif|remote\\.origin\\.pushurl)" || true)"',
    'if ls .git/hooks | grep -v "\\.sample$"; then echo "hooks survived"; exit 1; fi',
    "test ! -e .gitattributes",
    "echo probe > PROBE.txt",
  ].join("\n"),
];
