/**
 * Warm-slot allocation latency vs a plain `git clone` of the same repository, for a small
 * repository and a large synthetic one (50k files, 5k commits, built here with git fast-import).
 *
 *   npx tsx --conditions=source bench/repo-pool-allocation.ts [--files 50000] [--commits 5000] [--rounds 40]
 */
import { execFile, spawn } from "node:child_process";
import { chmodSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { newTaskId } from "@codefleet/contracts";
import { connectNats } from "@codefleet/platform/bus";
import { RepoPoolClient } from "@codefleet/repo-pool/client";
import { loadRepoPoolConfig } from "@codefleet/repo-pool/config";
import { startRepoPool } from "@codefleet/repo-pool/service";
import {
  createTestDatabase,
  createTestRepo,
  removeDataDir,
  startGitDaemon,
  startNats,
  startPostgres,
  testNamespace,
} from "@codefleet/test/support";
import { fmt, header, summarize } from "./lib.js";

const execFileP = promisify(execFile);
const arg = (name: string, def: number) => Number(process.argv[process.argv.indexOf(`--${name}`) + 1] ?? def) || def;
const FILES = arg("files", 50_000);
const COMMITS = arg("commits", 5_000);
const ROUNDS = arg("rounds", 40);

/** A bare repository with `files` files and `commits` commits, streamed through git fast-import. */
async function syntheticRepo(root: string, files: number, commits: number): Promise<string> {
  const bare = join(root, "large.git");
  await execFileP("git", ["init", "--quiet", "--bare", "--initial-branch=main", bare]);
  const fi = spawn("git", ["-C", bare, "fast-import", "--quiet"], { stdio: ["pipe", "ignore", "inherit"] });
  const w = (s: string) => fi.stdin.write(s);
  const t = 1_700_000_000;
  w(`commit refs/heads/main\ncommitter bench <b@e> ${t} +0000\ndata 7\ninitial\n`);
  for (let i = 0; i < files; i++) {
    const body = `file ${i}\n${"x".repeat(64)}\n`;
    w(`M 644 inline src/d${i % 500}/f${i}.txt\ndata ${Buffer.byteLength(body)}\n${body}`);
  }
  w("\n");
  for (let c = 1; c < commits; c++) {
    const body = `change ${c}\n`;
    w(
      `commit refs/heads/main\ncommitter bench <b@e> ${t + c} +0000\ndata ${`commit ${c}`.length}\ncommit ${c}\nM 644 inline src/d${c % 500}/f${c % files}.txt\ndata ${body.length}\n${body}\n`,
    );
  }
  fi.stdin.end();
  await new Promise((r, j) => fi.on("exit", (code) => (code === 0 ? r(undefined) : j(new Error(`fast-import exited ${code}`)))));
  await execFileP("git", ["-C", bare, "gc", "--quiet"]);
  return bare;
}

async function time<T>(f: () => Promise<T>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

async function main() {
  header("repo-pool: warm allocation vs git clone");
  const [nats, pg] = await Promise.all([startNats(), startPostgres()]);
  const root = mkdtempSync(join(tmpdir(), "bench-pool-"));
  chmodSync(root, 0o755); // slots are worked on as the agents' uid
  const small = await createTestRepo({ "README.md": "# small\n", "src/a.js": "1\n" }, "small.git");
  const t0 = performance.now();
  const large = await syntheticRepo(root, FILES, COMMITS);
  process.stdout.write(`built the large repository (${FILES} files, ${COMMITS} commits) in ${fmt(performance.now() - t0)}\n`);
  const { stdout: du } = await execFileP("du", ["-sh", large]);
  process.stdout.write(`large repository size: ${du.split("\t")[0]}\n`);
  const daemon = await startGitDaemon(root);
  const smallDaemon = await startGitDaemon(small.root);
  const db = await createTestDatabase(pg.url);
  const env = {
    DATABASE_URL: db.url,
    NATS_URL: nats.url,
    CODEFLEET_NAMESPACE: testNamespace(),
    REPO_POOL_DATA_DIR: join(root, "pool"),
    LOG_LEVEL: "error",
    MIRROR_REFRESH_MS: "0",
  };
  const svc = await startRepoPool(loadRepoPoolConfig(env));
  const nc = await connectNats({ servers: nats.url, name: "bench" });
  const client = new RepoPoolClient(nc, { namespace: env.CODEFLEET_NAMESPACE });
  const rows: string[] = [];
  for (const [label, url] of [
    ["small", smallDaemon.url("small.git")],
    ["large", daemon.url("large.git")],
  ] as const) {
    let sha = "";
    const cold = await time(async () => {
      const o = { taskId: newTaskId(), attempt: 1 };
      const a = await client.allocate({ repoUrl: url, ...o, leaseTtlMs: 60_000 }, { timeoutMs: 600_000 });
      sha = a.commitSha;
      await client.release({ slotId: a.slotId, ...o });
    });
    const warm: number[] = [];
    const warmCached: number[] = [];
    const releases: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const o = { taskId: newTaskId(), attempt: 1 };
      let slot = "";
      warm.push(await time(async () => (slot = (await client.allocate({ repoUrl: url, ...o, leaseTtlMs: 60_000 })).slotId)));
      releases.push(await time(() => client.release({ slotId: slot, ...o })));
    }
    // a task pinned to a commit sha the mirror holds: no upstream round trip at all
    const warmPinned: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const o = { taskId: newTaskId(), attempt: 1 };
      let slot = "";
      warmPinned.push(
        await time(async () => (slot = (await client.allocate({ repoUrl: url, ref: sha, ...o, leaseTtlMs: 60_000 })).slotId)),
      );
      await client.release({ slotId: slot, ...o });
    }
    // with a freshness window, allocation skips the upstream fetch
    const svc2Env = { ...env, MIRROR_REFRESH_MS: "60000" };
    await svc.stop();
    const svc2 = await startRepoPool(loadRepoPoolConfig(svc2Env));
    for (let i = 0; i < ROUNDS; i++) {
      const o = { taskId: newTaskId(), attempt: 1 };
      let slot = "";
      warmCached.push(await time(async () => (slot = (await client.allocate({ repoUrl: url, ...o, leaseTtlMs: 60_000 })).slotId)));
      await client.release({ slotId: slot, ...o });
    }
    await svc2.stop();
    Object.assign(svc, await startRepoPool(loadRepoPoolConfig(env)));
    const clones: number[] = [];
    for (let i = 0; i < Math.max(3, Math.min(ROUNDS, label === "large" ? 5 : ROUNDS)); i++) {
      const dir = join(root, `clone-${label}-${i}`);
      clones.push(await time(() => execFileP("git", ["clone", "--quiet", url, dir])));
      removeDataDir(dir);
    }
    const w = summarize(warm);
    const wc = summarize(warmCached);
    const c = summarize(clones);
    const r = summarize(releases);
    const wp = summarize(warmPinned);
    rows.push(
      `${label.padEnd(6)} cold first allocation ${fmt(cold)} | warm (fetch upstream each time) p50 ${fmt(w.p50)} p95 ${fmt(w.p95)} | warm (mirror fresh) p50 ${fmt(wc.p50)} p95 ${fmt(wc.p95)} | warm (pinned sha) p50 ${fmt(wp.p50)} p95 ${fmt(wp.p95)} | git clone p50 ${fmt(c.p50)} p95 ${fmt(c.p95)} | clone / warm p50 = ${(c.p50 / w.p50).toFixed(1)}x (${(c.p50 / wc.p50).toFixed(1)}x with a fresh mirror) | release (reset + clean) p50 ${fmt(r.p50)} p95 ${fmt(r.p95)}`,
    );
  }
  process.stdout.write(`${rows.join("\n")}\n`);
  await svc.stop().catch(() => undefined);
  await nc.drain();
  await daemon.stop();
  await smallDaemon.stop();
  await db.drop();
  await Promise.allSettled([nats.stop(), pg.stop()]);
  small.cleanup();
  removeDataDir(root);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
