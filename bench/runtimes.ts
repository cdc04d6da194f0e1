/**
 * What isolation costs per task container, through the runner's own Docker driver:
 * - start: createRun (network, egress proxy, container) until a first `true` has run in it;
 * - exec: one `sh -c true` in a running container (p50/p95);
 * - cpu: a small CPU-bound loop in the container (node), where gVisor's syscall interception shows;
 * for runc and runsc (gVisor) without network, and runc behind the egress proxy (network `llm`),
 * as ratios to plain runc without network. runsc is skipped where the engine does not have it.
 *
 *   npm run bench:runtimes [-- --n 20]
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { slotLayout } from "@codefleet/contracts";
import { DockerDriver } from "../services/runner/src/execution/docker-driver.js";
import type { RunContainerSpec, RunHandle } from "../services/runner/src/execution/driver.js";
import { fmt, header, summarize } from "./lib.js";

const N = Number(process.argv[process.argv.indexOf("--n") + 1] ?? 20) || 20;
const IMAGE = process.env.CODEFLEET_AGENT_IMAGE ?? "codefleet/agent:latest";
const PROXY_IMAGE = process.env.CODEFLEET_EGRESS_PROXY_IMAGE ?? "codefleet/egress-proxy:latest";
const CPU_WORK = "let x=0;for(let i=0;i<3e7;i++)x+=i%7;console.log(x)";

type Variant = { name: string; spec: Partial<RunContainerSpec> };

const runscInstalled = (() => {
  try {
    return execFileSync("docker", ["info", "--format", "{{json .Runtimes}}"], { encoding: "utf8" }).includes('"runsc"');
  } catch {
    return false;
  }
})();

const variants: Variant[] = [
  { name: "runc, no network", spec: { network: "none" } },
  ...(runscInstalled ? [{ name: "runsc (gVisor), no network", spec: { network: "none" as const, runtime: "runsc" } }] : []),
  {
    name: "runc, llm (egress proxy)",
    spec: { network: "bridge", egress: { mode: "llm", allow: [], agentPorts: [], llmUpstream: { host: "host.docker.internal", port: 9 } } },
  },
];

const slotDir = mkdtempSync(join(tmpdir(), "bench-runtimes-"));
const layout = slotLayout(slotDir);
mkdirSync(layout.tree, { recursive: true });
mkdirSync(join(layout.gitDir, "objects"), { recursive: true });
mkdirSync(layout.indexDir, { recursive: true });
writeFileSync(layout.index, "");

const driver = new DockerDriver({
  egress: { image: PROXY_IMAGE, network: "codefleet-egress-bench", extraHosts: ["host.docker.internal:host-gateway"] },
});

async function exec(run: RunHandle, cmd: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await run.exec(cmd, { timeoutMs: 60_000 });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} exited ${r.exitCode}`);
  return performance.now() - t0;
}

async function measure(v: Variant) {
  const starts: number[] = [];
  const execs: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const run = await driver.createRun({
      taskId: `bench-${Date.now()}-${i}`,
      attempt: 1,
      runnerId: "bench-runtimes",
      image: IMAGE,
      slot: { slotId: "bench", path: slotDir, hostPath: slotDir },
      memoryMb: 512,
      cpus: 1,
      pidsLimit: 128,
      network: "none",
      env: {},
      ...v.spec,
    });
    try {
      if (v.spec.egress) await run.address(); // the proxy answers: what an agent waits for
      await exec(run, ["true"]);
      starts.push(performance.now() - t0);
      for (let j = 0; j < 5; j++) execs.push(await exec(run, ["sh", "-c", "true"]));
      if (i < 5) cpu.push(await exec(run, ["node", "-e", CPU_WORK]));
    } finally {
      await run.remove();
    }
  }
  return { start: summarize(starts), exec: summarize(execs), cpu: summarize(cpu) };
}

header(`container runtimes and egress: ${N} containers each, ${IMAGE}`);
if (!runscInstalled) process.stdout.write("runsc is not registered with this engine: gVisor rows skipped (see .ci/run)\n");
const results: { name: string; r: Awaited<ReturnType<typeof measure>> }[] = [];
for (const v of variants) results.push({ name: v.name, r: await measure(v) });
const base = results[0]?.r as Awaited<ReturnType<typeof measure>>;
process.stdout.write(
  `${"variant".padEnd(28)} ${"start p50".padStart(10)} ${"p95".padStart(9)} ${"exec p50".padStart(10)} ${"p95".padStart(9)} ${"cpu p50".padStart(9)}   ratios to runc/none (start, exec, cpu)\n`,
);
for (const { name, r } of results)
  process.stdout.write(
    `${name.padEnd(28)} ${fmt(r.start.p50).padStart(10)} ${fmt(r.start.p95).padStart(9)} ${fmt(r.exec.p50).padStart(10)} ${fmt(r.exec.p95).padStart(9)} ${fmt(r.cpu.p50).padStart(9)}   ${(r.start.p50 / base.start.p50).toFixed(2)}x, ${(r.exec.p50 / base.exec.p50).toFixed(2)}x, ${(r.cpu.p50 / base.cpu.p50).toFixed(2)}x\n`,
  );
rmSync(slotDir, { recursive: true, force: true });
try {
  execFileSync("docker", ["network", "rm", "codefleet-egress-bench"], { stdio: "ignore" });
} catch {}
