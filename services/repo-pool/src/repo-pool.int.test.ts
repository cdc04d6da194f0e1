import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newTaskId, parseEvent, slotLayout } from "@codefleet/contracts";
import { Bus, connectNats } from "@codefleet/platform/bus";
import {
  commitFile,
  createTestDatabase,
  createTestRepo,
  freePort,
  git,
  removeDataDir,
  spawnService,
  startGitDaemon,
  startGitHttpServer,
  type TestRepo,
  testNamespace,
  waitFor,
  waitForHttp,
} from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { RepoPoolClient, RepoPoolError } from "./client.js";
import { loadRepoPoolConfig } from "./config.js";
import { type RepoPoolService, startRepoPool } from "./service.js";

const TOKEN = "s3cr3t-git-token-0123456789";
const METRICS_TOKEN = "repo-pool-metrics-token-0123456789";
let repo: TestRepo;
let svc: RepoPoolService;
let nc: NatsConnection;
let client: RepoPoolClient;
let dataDir: string;
let env: Record<string, string>;
let dropDb: () => Promise<void>;

beforeAll(async () => {
  repo = await createTestRepo({ "README.md": "# sample\n", "src/app.js": "console.log('hi')\n", ".gitignore": "build/\n" });
  const database = await createTestDatabase(inject("databaseUrl"));
  dropDb = database.drop;
  dataDir = mkdtempSync(join(tmpdir(), "cf-pool-"));
  // the test's HTTP git server is plain http on loopback: the operator opts this one host in, token included
  const credentials = join(mkdtempSync(join(tmpdir(), "cf-pool-creds-")), "git-credentials.json");
  writeFileSync(credentials, JSON.stringify([{ match: "127.0.0.1", password: TOKEN, insecureHttp: true }]));
  env = {
    DATABASE_URL: database.url,
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    REPO_POOL_DATA_DIR: dataDir,
    REPO_POOL_HOST_DATA_DIR: "/host/view/of/repo-pool",
    MAX_SLOTS: "40",
    MAX_SLOTS_PER_REPO: "25",
    REAPER_INTERVAL_MS: "200",
    GIT_CREDENTIALS_FILE: credentials,
    CODEFLEET_REPO_FILE_ROOTS: tmpdir(),
    CODEFLEET_REPO_HTTP_HOSTS: "127.0.0.1",
    METRICS_TOKEN,
    LOG_LEVEL: process.env.LOG_LEVEL ?? "error",
  };
  svc = await startRepoPool(loadRepoPoolConfig(env));
  nc = await connectNats({ servers: inject("natsUrl"), name: "repo-pool-test" });
  client = new RepoPoolClient(nc, { namespace: env.CODEFLEET_NAMESPACE });
});

afterAll(async () => {
  await svc?.stop();
  await nc?.drain();
  await dropDb?.();
  repo?.cleanup();
  removeDataDir(dataDir);
});

const owner = (attempt = 1) => ({ taskId: newTaskId(), attempt });
const tree = (a: { path: string }) => slotLayout(a.path).tree;
const gitDir = (a: { path: string }) => slotLayout(a.path).gitDir;

async function slotState(id: string) {
  return svc.db.selectFrom("slots").selectAll().where("id", "=", id).executeTakeFirst();
}

describe("repo-pool against real git remotes", () => {
  it("allocates, heartbeats and releases a slot, then hands it out warm", async () => {
    const o = owner();
    const a = await client.allocate({ repoUrl: repo.fileUrl, ...o, leaseTtlMs: 60_000 });
    expect(a.warm).toBe(false);
    expect(a.ref).toBe("main");
    expect(a.commitSha).toBe(await git(repo.work, "rev-parse", "HEAD"));
    expect(a.path.startsWith(dataDir)).toBe(true);
    expect(a.hostPath).toBe(join("/host/view/of/repo-pool", "slots", a.slotId));
    expect(readFileSync(join(tree(a), "src/app.js"), "utf8")).toContain("hi");
    expect(await git(gitDir(a), "rev-parse", "HEAD")).toBe(a.commitSha);
    expect(await git(gitDir(a), "remote", "get-url", "origin")).toBe(repo.fileUrl);
    // the tree holds the repository's files only: its git directory is beside it, never inside
    expect(existsSync(join(tree(a), ".git"))).toBe(false);
    const hb = await client.heartbeat({ slotId: a.slotId, ...o, leaseTtlMs: 120_000 });
    expect(Date.parse(hb.leaseExpiresAt)).toBeGreaterThan(Date.parse(a.leaseExpiresAt));
    expect(hb.overQuota).toBe(false);
    expect(hb.diskBytes).toBeGreaterThan(0);
    await expect(client.heartbeat({ slotId: a.slotId, taskId: o.taskId, attempt: 2, leaseTtlMs: 1000 })).rejects.toMatchObject({
      code: "lease_lost",
    });
    expect((await client.release({ slotId: a.slotId, ...o })).outcome).toBe("recycled");
    expect((await slotState(a.slotId))?.state).toBe("warm");
    // releasing twice is harmless
    expect((await client.release({ slotId: a.slotId, ...o })).outcome).toBe("recycled");
    const b = await client.allocate({ repoUrl: repo.fileUrl, ...owner(), leaseTtlMs: 60_000 });
    expect(b.warm).toBe(true);
    expect(b.slotId).toBe(a.slotId);
    // a retried allocate of the same attempt gets the same slot
    await client.release({ slotId: b.slotId, taskId: (await slotState(b.slotId))?.task_id as string, attempt: 1 });
  });

  it("publishes slot events on the task's event stream", async () => {
    const o = owner();
    const a = await client.allocate({ repoUrl: repo.fileUrl, ...o, leaseTtlMs: 60_000 });
    await client.release({ slotId: a.slotId, ...o });
    const bus = await Bus.create(nc, { namespace: env.CODEFLEET_NAMESPACE });
    const get = async (type: "slot.allocated" | "slot.released") =>
      parseEvent(
        (
          await bus.jsm.streams.getMessage(bus.topology.streams.events.name, { last_by_subj: bus.topology.subjects.event(o.taskId, type) })
        )?.json(),
      );
    const allocated = await get("slot.allocated");
    expect(allocated).toMatchObject({ taskId: o.taskId, attempt: 1, data: { slotId: a.slotId, commitSha: a.commitSha } });
    expect((await get("slot.released")).data).toMatchObject({ slotId: a.slotId, outcome: "recycled" });
  });

  it("hands a runner's reserved slot to a task by adopt, when the ref has not moved, with no events for the reservation", async () => {
    const bus = await Bus.create(nc, { namespace: env.CODEFLEET_NAMESPACE });
    const events = async (taskId: string) => {
      let n = 0;
      for (const type of ["slot.allocated", "slot.released"] as const) {
        const m = await bus.jsm.streams
          .getMessage(bus.topology.streams.events.name, { last_by_subj: bus.topology.subjects.event(taskId, type) })
          .catch(() => null);
        if (m) n++;
      }
      return n;
    };
    const reservation = { taskId: `warm-${newTaskId().toLowerCase()}`, attempt: 1 };
    const r = await client.allocate({ repoUrl: repo.fileUrl, ref: "main", ...reservation, leaseTtlMs: 60_000, reservation: true });
    expect((await client.status()).slots.reserved).toBeGreaterThanOrEqual(1);
    await client.heartbeat({ slotId: r.slotId, ...reservation, leaseTtlMs: 60_000 });
    // another runner's reservation id is not a key to it
    const task = owner();
    await expect(
      client.adopt({
        slotId: r.slotId,
        reservation: { ...reservation, taskId: "warm-someone-else" },
        repoUrl: repo.fileUrl,
        ref: "main",
        ...task,
        leaseTtlMs: 60_000,
      }),
    ).rejects.toMatchObject({ code: "lease_lost" });
    const adopted = await client.adopt({ slotId: r.slotId, reservation, repoUrl: repo.fileUrl, ref: "main", ...task, leaseTtlMs: 60_000 });
    expect(adopted).toMatchObject({ slotId: r.slotId, commitSha: r.commitSha, warm: true });
    // idempotent for the same attempt; the reservation no longer holds it
    expect(
      (await client.adopt({ slotId: r.slotId, reservation, repoUrl: repo.fileUrl, ref: "main", ...task, leaseTtlMs: 60_000 })).slotId,
    ).toBe(r.slotId);
    await expect(client.heartbeat({ slotId: r.slotId, ...reservation, leaseTtlMs: 1000 })).rejects.toMatchObject({ code: "lease_lost" });
    await waitFor("slot.allocated of the task", async () => (await events(task.taskId)) === 1, 5000, 50);
    expect(await events(reservation.taskId)).toBe(0);
    await client.release({ slotId: r.slotId, ...task });

    // the ref moved on since the slot was reserved: the task must start from the new commit
    const stale = { taskId: `warm-${newTaskId().toLowerCase()}`, attempt: 1 };
    const s = await client.allocate({ repoUrl: repo.fileUrl, ref: "main", ...stale, leaseTtlMs: 60_000, reservation: true });
    await commitFile(repo, "MOVED.md", "moved\n");
    await expect(
      client.adopt({ slotId: s.slotId, reservation: stale, repoUrl: repo.fileUrl, ref: "main", ...owner(), leaseTtlMs: 60_000 }),
    ).rejects.toMatchObject({ code: "slot_stale" });
    await client.release({ slotId: s.slotId, ...stale });
    expect(await events(stale.taskId)).toBe(0);
  });

  it("destroys a slot whose lease expired (its container may still be writing it)", async () => {
    const o = owner();
    const a = await client.allocate({ repoUrl: repo.fileUrl, ...o, leaseTtlMs: 1000 });
    writeFileSync(join(tree(a), "left-by-a-dead-runner.txt"), "x");
    await waitFor("reclaim", async () => (await slotState(a.slotId)) === undefined, 10_000, 100);
    expect(existsSync(a.path)).toBe(false);
    await expect(client.heartbeat({ slotId: a.slotId, ...o, leaseTtlMs: 1000 })).rejects.toMatchObject({ code: "lease_lost" });
  });

  it("never hands one slot to two of 20 concurrent allocations", async () => {
    const owners = Array.from({ length: 20 }, () => owner());
    const results = await Promise.all(owners.map((o) => client.allocate({ repoUrl: repo.fileUrl, ...o, leaseTtlMs: 60_000 })));
    expect(new Set(results.map((r) => r.slotId)).size).toBe(20);
    const rows = await svc.db.selectFrom("slots").select(["id", "task_id"]).where("state", "=", "leased").execute();
    for (const [i, r] of results.entries()) expect(rows.find((row) => row.id === r.slotId)?.task_id).toBe(owners[i]?.taskId);
    await Promise.all(results.map((r, i) => client.release({ slotId: r.slotId, ...(owners[i] as { taskId: string; attempt: number }) })));
  });

  it("answers 'no capacity' instead of evicting a slot in use", async () => {
    const small = mkdtempSync(join(tmpdir(), "cf-pool-small-"));
    const limited = await startRepoPool(
      loadRepoPoolConfig({
        ...env,
        REPO_POOL_DATA_DIR: small,
        MAX_SLOTS: "3",
        MAX_SLOTS_PER_REPO: "3",
        CODEFLEET_NAMESPACE: testNamespace(),
        DATABASE_SCHEMA: "repo_pool_small",
      }),
    );
    try {
      const c = new RepoPoolClient(nc, { namespace: limited.bus.topology.namespace });
      const outcomes = await Promise.allSettled(
        Array.from({ length: 8 }, () => c.allocate({ repoUrl: repo.fileUrl, ...owner(), leaseTtlMs: 60_000 })),
      );
      const ok = outcomes.filter((o) => o.status === "fulfilled");
      const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
      expect(ok, refused.map((r) => String(r.reason)).join("\n")).toHaveLength(3);
      expect(refused).toHaveLength(5);
      for (const r of refused) {
        expect(r.reason).toBeInstanceOf(RepoPoolError);
        expect(r.reason.code).toBe("no_capacity");
        expect(r.reason.retry.kind).not.toBe("never");
      }
    } finally {
      await limited.stop();
      removeDataDir(small);
    }
  });

  it("removes untracked and ignored files, changes and every .git an attempt made on release", async () => {
    const o = owner();
    const a = await client.allocate({ repoUrl: repo.fileUrl, ...o, leaseTtlMs: 60_000 });
    const refsBefore = await git(gitDir(a), "for-each-ref");
    const t = tree(a);
    writeFileSync(join(t, "untracked.txt"), "x");
    writeFileSync(join(t, "README.md"), "modified");
    rmSync(join(t, "src/app.js"));
    mkdirSync(join(t, "build"));
    writeFileSync(join(t, "build", "ignored.o"), "x");
    // what an agent's own git leaves: a repository with hooks in the tree, and a nested one
    await git(t, "init", "--quiet");
    writeFileSync(join(t, ".git", "hooks", "post-checkout"), "#!/bin/sh\ntouch /tmp/pwned-by-hook\n", { mode: 0o755 });
    mkdirSync(join(t, "src", "nested", ".git"), { recursive: true });
    writeFileSync(join(t, "src", "nested", ".git", "HEAD"), "ref: refs/heads/main\n");
    // an agent writes as the agents' uid in its container
    if (process.getuid?.() === 0) execFileSync("chown", ["-R", "1000:1000", t]);
    await client.release({ slotId: a.slotId, ...o });
    const b = await client.allocate({ repoUrl: repo.fileUrl, ...owner(), leaseTtlMs: 60_000 });
    expect(b.slotId).toBe(a.slotId);
    for (const gone of ["untracked.txt", "build", ".git", "src/nested"]) expect(existsSync(join(t, gone)), gone).toBe(false);
    expect(readFileSync(join(t, "README.md"), "utf8")).toBe("# sample\n");
    expect(existsSync(join(t, "src/app.js"))).toBe(true);
    expect(existsSync("/tmp/pwned-by-hook")).toBe(false);
    // the trusted git directory is exactly as it was
    expect(await git(gitDir(b), "for-each-ref")).toBe(refsBefore);
    const row = await slotState(b.slotId);
    await client.release({ slotId: b.slotId, taskId: row?.task_id as string, attempt: 1 });
  });

  it("picks up a force-pushed upstream ref on the next allocation", async () => {
    const before = await git(repo.work, "rev-parse", "HEAD");
    const o1 = owner();
    const a = await client.allocate({ repoUrl: repo.fileUrl, ...o1, leaseTtlMs: 60_000 });
    expect(a.commitSha).toBe(before);
    await client.release({ slotId: a.slotId, ...o1 });
    await git(repo.work, "commit", "--quiet", "--amend", "-m", "rewritten history");
    await git(repo.work, "push", "--quiet", "--force", "origin", "HEAD:main");
    const rewritten = await git(repo.work, "rev-parse", "HEAD");
    expect(rewritten).not.toBe(before);
    const o2 = owner();
    const b = await client.allocate({ repoUrl: repo.fileUrl, ...o2, leaseTtlMs: 60_000 });
    expect(b.commitSha).toBe(rewritten);
    expect(await git(gitDir(b), "rev-parse", "HEAD")).toBe(rewritten);
    await client.release({ slotId: b.slotId, ...o2 });
    // a new commit on main, and a tag and a sha as refs
    const next = await commitFile(repo, "NEW.md", "new\n");
    await git(repo.work, "tag", "v1.0", next);
    await git(repo.work, "push", "--quiet", "origin", "v1.0");
    for (const ref of ["main", "v1.0", next]) {
      const o = owner();
      const r = await client.allocate({ repoUrl: repo.fileUrl, ref, ...o, leaseTtlMs: 60_000 });
      expect(r.commitSha).toBe(next);
      expect(existsSync(join(tree(r), "NEW.md"))).toBe(true);
      await client.release({ slotId: r.slotId, ...o });
    }
  });

  it("works over git daemon (git://)", async () => {
    const daemon = await startGitDaemon(repo.root);
    try {
      const o = owner();
      const a = await client.allocate({ repoUrl: daemon.url("sample.git"), ...o, leaseTtlMs: 60_000 });
      expect(a.commitSha).toBe(await git(repo.work, "rev-parse", "HEAD"));
      expect(await git(gitDir(a), "remote", "get-url", "origin")).toBe(daemon.url("sample.git"));
      await client.release({ slotId: a.slotId, ...o });
    } finally {
      await daemon.stop();
    }
  });

  it("uses credentials per command and never writes them into a slot, a mirror, an event or a log", async () => {
    const http = await startGitHttpServer({ root: repo.root, password: TOKEN });
    try {
      const o = owner();
      const a = await client.allocate({ repoUrl: http.url("sample.git"), ...o, leaseTtlMs: 60_000 });
      expect(a.commitSha).toBe(await git(repo.work, "rev-parse", "HEAD"));
      expect(http.requests.length).toBeGreaterThan(0);
      const configs = [
        join(gitDir(a), "config"),
        ...readdirSync(join(dataDir, "mirrors"))
          .filter((m) => m.endsWith(".git"))
          .map((m) => join(dataDir, "mirrors", m, "config")),
      ];
      for (const f of configs) expect(readFileSync(f, "utf8")).not.toContain(TOKEN);
      await client.release({ slotId: a.slotId, ...o });
      // credentials embedded in the URL: used, then stripped
      const o2 = owner();
      const embedded = http.url("sample.git").replace("http://", `http://x-access-token:${TOKEN}@`);
      const b = await client.allocate({ repoUrl: embedded, ...o2, leaseTtlMs: 60_000 });
      expect(b.remoteUrl).toBe(http.url("sample.git"));
      expect(readFileSync(join(gitDir(b), "config"), "utf8")).not.toContain(TOKEN);
      await client.release({ slotId: b.slotId, ...o2 });
      const bus = await Bus.create(nc, { namespace: env.CODEFLEET_NAMESPACE });
      const msg = await bus.jsm.streams.getMessage(bus.topology.streams.events.name, {
        last_by_subj: bus.topology.subjects.event(o2.taskId, "slot.allocated"),
      });
      expect(new TextDecoder().decode(msg?.data)).not.toContain(TOKEN);
      // a wrong token is a clear auth failure
      const wrong = http.url("sample.git").replace("http://", "http://x-access-token:wrong-token@");
      await expect(
        client.allocate({ repoUrl: wrong.replace("sample.git", "sample.git"), ...owner(), leaseTtlMs: 60_000 }),
      ).rejects.toMatchObject({ code: "git_auth_failed" });
    } finally {
      await http.stop();
    }
  });

  it("refuses bad input with a clear error and leaves nothing half-created", async () => {
    const before = await svc.db.selectFrom("slots").select("id").execute();
    const cases: [Record<string, unknown>, string][] = [
      [{ repoUrl: "not a url" }, "invalid_repo_url"],
      [{ repoUrl: "--upload-pack=touch /tmp/pwned" }, "invalid_repo_url"],
      [{ repoUrl: "ext::sh -c touch% /tmp/pwned" }, "invalid_repo_url"],
      [{ repoUrl: `file://${repo.work}/nothing-here.git` }, "repo_not_found"],
      [{ repoUrl: `file://${dataDir}/../../etc/x.git` }, "repo_url_file_refused"],
      [{ repoUrl: "file:///etc/codefleet.git" }, "repo_url_file_refused"],
      [{ repoUrl: "http://203.0.113.9/x.git" }, "repo_url_scheme_refused"],
      [{ repoUrl: "git://127.0.0.1:1/nothing.git" }, "remote_unreachable"],
      [{ repoUrl: repo.fileUrl, ref: "no-such-branch" }, "ref_not_found"],
      [{ repoUrl: repo.fileUrl, ref: "-n" }, "invalid_request"],
      [{ repoUrl: repo.fileUrl, ref: "a..b" }, "invalid_request"],
      [{ repoUrl: repo.fileUrl, ref: "bad\u0001ref" }, "invalid_request"],
      [{ repoUrl: repo.fileUrl, taskId: "../etc" }, "invalid_request"],
    ];
    for (const [overrides, code] of cases) {
      const err = await client.allocate({ repoUrl: repo.fileUrl, ...owner(), leaseTtlMs: 60_000, ...overrides } as never).catch((e) => e);
      expect(err, JSON.stringify(overrides)).toBeInstanceOf(RepoPoolError);
      expect((err as RepoPoolError).code, JSON.stringify(overrides)).toBe(code);
    }
    expect(existsSync("/tmp/pwned")).toBe(false);
    const after = await svc.db.selectFrom("slots").select("id").execute();
    expect(after.length).toBe(before.length);
    expect(readdirSync(join(dataDir, "mirrors")).filter((d) => d.includes(".tmp-"))).toEqual([]);
    expect(readdirSync(join(dataDir, "slots")).filter((d) => d.endsWith(".creating"))).toEqual([]);
  });
});

describe("repo-pool's HTTP endpoints", () => {
  it("puts /metrics behind METRICS_TOKEN and keeps /healthz and /readyz open", async () => {
    const open = await svc.app.inject({ method: "GET", url: "/metrics" });
    expect(open.statusCode).toBe(401);
    expect(open.headers["www-authenticate"]).toBe('Bearer realm="metrics"');
    expect(open.json()).toMatchObject({ status: 401, code: "unauthorized" });
    expect(open.body).not.toContain(METRICS_TOKEN);
    const wrong = await svc.app.inject({ method: "GET", url: "/metrics", headers: { authorization: `Bearer ${METRICS_TOKEN}x` } });
    expect(wrong.statusCode).toBe(401);
    const ok = await svc.app.inject({ method: "GET", url: "/metrics", headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain("codefleet_repo_pool_slots");
    expect((await svc.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    expect((await svc.app.inject({ method: "GET", url: "/readyz" })).statusCode).toBe(200);
  });

  it("refuses a METRICS_TOKEN shorter than 16 characters at start", () => {
    expect(loadRepoPoolConfig({ ...env, METRICS_TOKEN: undefined }).METRICS_TOKEN).toBeUndefined();
    expect(() => loadRepoPoolConfig({ ...env, METRICS_TOKEN: "short" })).toThrow(/METRICS_TOKEN/);
  });
});

describe("repo-pool crash safety", () => {
  it("leaves consistent state after kill -9 mid-allocation and a restart", async () => {
    // A repository big enough that cloning takes a moment.
    const files: Record<string, string> = {};
    for (let i = 0; i < 3000; i++) files[`src/m${i % 50}/f${i}.txt`] = `file ${i}\n`.repeat(20);
    const big = await createTestRepo(files, "big.git");
    const database = await createTestDatabase(inject("databaseUrl"));
    const dir = mkdtempSync(join(tmpdir(), "cf-pool-crash-"));
    const port = await freePort();
    const procEnv = {
      ...env,
      DATABASE_URL: database.url,
      REPO_POOL_DATA_DIR: dir,
      CODEFLEET_NAMESPACE: testNamespace(),
      PORT: String(port),
      HOST: "127.0.0.1",
    };
    const c = new RepoPoolClient(nc, { namespace: procEnv.CODEFLEET_NAMESPACE });
    let proc = spawnService("services/repo-pool/src/main.ts", procEnv);
    try {
      await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60_000, proc);
      const pending = Promise.allSettled(
        Array.from({ length: 4 }, () =>
          c.allocate({ repoUrl: `file://${big.bare}`, ...owner(), leaseTtlMs: 60_000 }, { timeoutMs: 20_000 }),
        ),
      );
      await waitFor(
        "clone under way",
        async () => existsSync(join(dir, "mirrors")) && readdirSync(join(dir, "mirrors")).length > 0,
        20_000,
        10,
      );
      await new Promise((r) => setTimeout(r, 150));
      await proc.kill("SIGKILL");
      await pending;
      proc = spawnService("services/repo-pool/src/main.ts", procEnv);
      await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60_000, proc);
      const { createDatabase } = await import("./store/database.js");
      const { db } = createDatabase({ url: database.url, schema: "repo_pool" });
      try {
        const rows = await db.selectFrom("slots").selectAll().execute();
        expect(rows.filter((r) => r.state === "creating" || r.state === "resetting")).toEqual([]);
        const dirs = existsSync(join(dir, "slots")) ? readdirSync(join(dir, "slots")) : [];
        expect(dirs.sort()).toEqual(rows.map((r) => r.id).sort());
        expect(readdirSync(join(dir, "mirrors")).filter((d) => d.includes(".tmp-"))).toEqual([]);
        // and it still works
        const o = owner();
        const a = await c.allocate({ repoUrl: `file://${big.bare}`, ...o, leaseTtlMs: 60_000 }, { timeoutMs: 60_000 });
        expect(existsSync(join(tree(a), "src/m1/f1.txt"))).toBe(true);
        await c.release({ slotId: a.slotId, ...o });
      } finally {
        await db.destroy();
      }
    } finally {
      await proc.kill("SIGTERM");
      await database.drop();
      big.cleanup();
      removeDataDir(dir);
    }
  }, 180_000);
});
