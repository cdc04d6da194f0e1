/**
 * End to end through the compose stack: N script tasks (default 50) submitted at once to the
 * sample repository, each fetch → implement → test → push. Prints tasks per minute, p50/p95
 * submit-to-finish and submit-to-first-command, and the peak memory of each service, next to the
 * same work done by a bare loop of `git clone` + `docker run` + `git push` at the runner's
 * concurrency (the naive baseline).
 *
 *   npx tsx --conditions=source bench/fleet-e2e.ts [--tasks 50] [--concurrency 10]
 *
 * Needs the images (npm run images:offline, or the upstream ones) and a Docker engine.
 */
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { TaskPage, TaskSpec } from "@codefleet/contracts";
import { createTestRepo, REPO_ROOT, startGitDaemon, startStack } from "@codefleet/test/support";
import { fmt, header, summarize } from "./lib.js";

const execFileP = promisify(execFile);
const arg = (name: string, def: number) => Number(process.argv[process.argv.indexOf(`--${name}`) + 1] ?? def) || def;
const TASKS = arg("tasks", 50);
const CONCURRENCY = arg("concurrency", 10);
const IMAGE = process.env.CODEFLEET_AGENT_IMAGE ?? "codefleet/agent:latest";
// the first command prints the container's clock: submit-to-first-command without guessing
const STEP = `date +%s%3N; printf '#!/bin/sh\\necho "hello from codefleet"\\n' > greet.sh`;
const FINAL = ["succeeded", "failed", "timed_out", "canceled"];

/** Samples `docker stats` every second; keeps each compose service's peak memory (MiB). */
function memorySampler(project: string): { stop(): Promise<Record<string, number>> } {
  const peak: Record<string, number> = {};
  let running = true;
  const loop = (async () => {
    while (running) {
      const { stdout } = await execFileP("docker", ["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"]).catch(() => ({
        stdout: "",
      }));
      for (const line of stdout.split("\n")) {
        const m = new RegExp(`^${project}[-_](.+?)[-_]\\d+ ([\\d.]+)(KiB|MiB|GiB)`).exec(line);
        if (!m) continue;
        const mib = Number(m[2]) * (m[3] === "GiB" ? 1024 : m[3] === "KiB" ? 1 / 1024 : 1);
        const svc = m[1] as string;
        peak[svc] = Math.max(peak[svc] ?? 0, mib);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return peak;
    },
  };
}

async function platformRun() {
  const stack = await startStack();
  const headers = { authorization: `Bearer ${stack.token}`, "content-type": "application/json" };
  const runId = Math.random().toString(36).slice(2, 8);
  const spec: TaskSpec = {
    repo: { url: "git://git-server:9418/sample.git", ref: "main" },
    title: "bench: make the greeting mention codefleet",
    prompt: "Change greet.sh so that it greets from codefleet.",
    agent: { kind: "script", steps: [{ run: STEP }] },
    test: { command: "sh test.sh" },
    labels: { bench: runId },
  };
  try {
    // one warm-up task: images into the page cache, the mirror cloned, a slot warm
    const warm = (await (
      await fetch(`${stack.registryUrl}/v1/tasks`, {
        method: "POST",
        headers,
        body: JSON.stringify({ ...spec, labels: { bench: `${runId}-warmup` } }),
      })
    ).json()) as { id: string };
    for (;;) {
      const v = (await (await fetch(`${stack.registryUrl}/v1/tasks/${warm.id}`, { headers })).json()) as { status: string };
      if (FINAL.includes(v.status)) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    const sampler = memorySampler(stack.project);
    const submittedAt = new Map<string, number>();
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: TASKS }, async () => {
        const at = Date.now();
        const res = await fetch(`${stack.registryUrl}/v1/tasks`, { method: "POST", headers, body: JSON.stringify(spec) });
        if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
        submittedAt.set(((await res.json()) as { id: string }).id, at);
      }),
    );
    let page: TaskPage = { items: [] };
    for (;;) {
      page = (await (await fetch(`${stack.registryUrl}/v1/tasks?label=bench=${runId}&limit=200`, { headers })).json()) as TaskPage;
      if (page.items.length === TASKS && page.items.every((t) => FINAL.includes(t.status))) break;
      if (Date.now() - t0 > 30 * 60_000) throw new Error("tasks did not finish in 30 minutes");
      await new Promise((r) => setTimeout(r, 500));
    }
    const wall = Math.max(...page.items.map((t) => Date.parse(t.finishedAt ?? ""))) - t0;
    const peak = await sampler.stop();
    const toFinish: number[] = [];
    const toFirstCommand: number[] = [];
    for (const t of page.items) {
      const at = submittedAt.get(t.id) as number;
      toFinish.push(Date.parse(t.finishedAt ?? "") - at);
      const log = await (await fetch(`${stack.registryUrl}/v1/tasks/${t.id}/logs`, { headers })).text();
      const first = /^(\d{13})$/m.exec(log)?.[1];
      if (first) toFirstCommand.push(Number(first) - at);
    }
    const statuses: Record<string, number> = {};
    for (const t of page.items) statuses[t.status] = (statuses[t.status] ?? 0) + 1;
    return { wall, toFinish: summarize(toFinish), toFirstCommand: summarize(toFirstCommand), peak, statuses };
  } finally {
    await stack.down();
  }
}

/** The naive baseline: per task, clone, run the same step and test in a fresh container, commit, push. */
async function baselineRun() {
  const sampleDir = join(REPO_ROOT, "deploy/git-server/sample");
  const files = Object.fromEntries(readdirSync(sampleDir).map((f) => [f, readFileSync(join(sampleDir, f), "utf8")]));
  const repo = await createTestRepo(files, "sample.git");
  await execFileP("git", ["-C", repo.bare, "config", "daemon.receivepack", "true"]);
  const daemon = await startGitDaemon(repo.root);
  const url = daemon.url("sample.git");
  const work = mkdtempSync(join(tmpdir(), "bench-baseline-"));
  chmodSync(work, 0o755);
  const perTask: number[] = [];
  let next = 0;
  const t0 = Date.now();
  const one = async (i: number) => {
    const start = Date.now();
    const dir = join(work, `t${i}`);
    await execFileP("git", ["clone", "--quiet", url, dir]);
    await execFileP("chown", ["-R", "1000:1000", dir]);
    await execFileP("docker", [
      "run",
      "--rm",
      "--network",
      "none",
      "--user",
      "1000:1000",
      "-v",
      `${dir}:/workspace`,
      "-w",
      "/workspace",
      IMAGE,
      "sh",
      "-c",
      `${STEP} && sh test.sh`,
    ]);
    const g = (...a: string[]) =>
      execFileP("git", ["-c", "safe.directory=*", "-c", "user.name=bench", "-c", "user.email=b@e", "-C", dir, ...a]);
    await g("add", "-A");
    await g("commit", "--quiet", "-m", `baseline ${i}`);
    await g("push", "--quiet", "origin", `HEAD:refs/heads/baseline/${i}`);
    rmSync(dir, { recursive: true, force: true });
    perTask.push(Date.now() - start);
  };
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < TASKS; i = next++) await one(i);
    }),
  );
  const wall = Date.now() - t0;
  await daemon.stop();
  repo.cleanup();
  rmSync(work, { recursive: true, force: true });
  return { wall, perTask: summarize(perTask) };
}

async function main() {
  header(`end to end: ${TASKS} script tasks through the compose stack vs git clone + docker run (concurrency ${CONCURRENCY})`);
  const p = await platformRun();
  const b = await baselineRun();
  const perMin = (wall: number) => (TASKS / wall) * 60_000;
  const out = [
    `codefleet: ${TASKS} tasks in ${fmt(p.wall)} = ${perMin(p.wall).toFixed(1)} tasks/min; statuses ${JSON.stringify(p.statuses)}`,
    `  submit → finish         p50 ${fmt(p.toFinish.p50)}  p95 ${fmt(p.toFinish.p95)}`,
    `  submit → first command  p50 ${fmt(p.toFirstCommand.p50)}  p95 ${fmt(p.toFirstCommand.p95)}  (n=${p.toFirstCommand.n})`,
    `  peak memory (MiB): ${Object.entries(p.peak)
      .sort()
      .map(([k, v]) => `${k} ${v.toFixed(0)}`)
      .join(", ")}`,
    `baseline (git clone + docker run + git push): ${TASKS} tasks in ${fmt(b.wall)} = ${perMin(b.wall).toFixed(1)} tasks/min; per task p50 ${fmt(b.perTask.p50)} p95 ${fmt(b.perTask.p95)}`,
    `ratio: codefleet throughput / baseline = ${(perMin(p.wall) / perMin(b.wall)).toFixed(2)}x`,
  ];
  process.stdout.write(`${out.join("\n")}\n`);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
