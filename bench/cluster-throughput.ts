/**
 * Throughput of the cluster overlay (deploy/cluster) with one runner host and with two: N script
 * tasks (default 40, each `sleep 2` then a one-line change) submitted at once, timed from submit
 * until the last one finished; first with host-b's runner stopped, then with both hosts. Prints
 * tasks per minute and the ratio.
 *
 *   npm run bench:cluster [-- --tasks 40]
 *
 * On one machine the two "hosts" share its two cores and its Docker engine: the ratio shows what a
 * second runner's concurrency buys when the work waits (sleep, I/O), not what a second machine's
 * CPUs would. Needs the images (npm run images:offline, or the upstream ones) and a Docker engine.
 */
import { type Stack, stackApi, startStack } from "@codefleet/test/support";
import { header } from "./lib.js";

const arg = (name: string, def: number) => Number(process.argv[process.argv.indexOf(`--${name}`) + 1] ?? def) || def;
const TASKS = arg("tasks", 40);
const FINAL = ["succeeded", "failed", "timed_out", "canceled"];

type Task = { id: string; status: string; attempts?: { runnerId?: string }[] };

async function round(stack: Stack, label: string): Promise<{ perMinute: number; seconds: number; byHost: Record<string, number> }> {
  const t0 = Date.now();
  const ids = await Promise.all(
    Array.from({ length: TASKS }, async (_, i) => {
      const res = await stackApi<Task>(stack, "/v1/tasks", {
        method: "POST",
        body: JSON.stringify({
          repo: { url: "git://git-server:9418/sample.git", ref: "main" },
          title: `${label} ${i}`,
          prompt: "greet from codefleet",
          agent: { kind: "script", steps: [{ run: "sleep 2; printf '#!/bin/sh\\necho \"hello from codefleet\"\\n' > greet.sh" }] },
          test: { command: "sh test.sh" },
        }),
      });
      if (res.status !== 202) throw new Error(`submit: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.id;
    }),
  );
  const done = new Map<string, Task>();
  while (done.size < ids.length) {
    for (const id of ids) {
      if (done.has(id)) continue;
      const t = (await stackApi<Task>(stack, `/v1/tasks/${id}`)).body;
      if (FINAL.includes(t.status)) done.set(id, t);
    }
    if (Date.now() - t0 > 600_000) throw new Error(`${label}: ${ids.length - done.size} tasks not finished after 600 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const seconds = (Date.now() - t0) / 1000;
  const failed = [...done.values()].filter((t) => t.status !== "succeeded");
  if (failed.length) throw new Error(`${label}: ${failed.length} tasks did not succeed`);
  const byHost: Record<string, number> = {};
  for (const t of done.values()) {
    const host = t.attempts?.at(-1)?.runnerId?.replace(/^.*-(host-[ab])$/, "$1") ?? "?";
    byHost[host] = (byHost[host] ?? 0) + 1;
  }
  return { perMinute: (TASKS / seconds) * 60, seconds, byHost };
}

const stack = await startStack({ cluster: true });
try {
  header(`cluster throughput: ${TASKS} script tasks, one runner host vs two (concurrency 10 each)`);
  await stack.stack("stop", "runner-b");
  const one = await round(stack, "one host");
  console.log(`one host:  ${one.seconds.toFixed(1)} s, ${one.perMinute.toFixed(1)} tasks/min  ${JSON.stringify(one.byHost)}`);
  await stack.stack("up", "runner-b");
  const two = await round(stack, "two hosts");
  console.log(`two hosts: ${two.seconds.toFixed(1)} s, ${two.perMinute.toFixed(1)} tasks/min  ${JSON.stringify(two.byHost)}`);
  console.log(`ratio two/one: ${(two.perMinute / one.perMinute).toFixed(2)}x`);
} finally {
  await stack.down();
}
