import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { type Stack, stackApi, stackGit, startStack, waitFor, waitForTasks } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The cluster overlay (deploy/cluster): a three-node NATS JetStream cluster with every stream and
 * KV bucket on all three nodes, and two runner hosts, each a runner and its own repo-pool. One NATS
 * node and one whole host die while 20 tasks run; every task still succeeds, each branch pushed once.
 */
const execFileP = promisify(execFile);
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ cluster: true });
});

afterAll(async () => {
  await stack?.down();
});

type Task = {
  id: string;
  status: string;
  branch: string;
  reasonCode?: string;
  attempts?: { attempt: number; runnerId?: string; status?: string; reason?: string }[];
};

const api = <T>(path: string, init: RequestInit = {}) => stackApi<T>(stack, path, init);
const containerOf = async (service: string) => (await stack.stack("ps", "-q", service)).trim();

const task = (i: number) => ({
  repo: { url: "git://git-server:9418/sample.git", ref: "main" },
  title: `cluster chaos ${i}`,
  prompt: "Change greet.sh so that it greets from codefleet.",
  agent: { kind: "script", steps: [{ run: "sleep 3" }, { run: "printf '#!/bin/sh\\necho \"hello from codefleet\"\\n' > greet.sh" }] },
  test: { command: "sh test.sh" },
});

describe("the cluster overlay: three NATS nodes, two runner hosts", () => {
  it("keeps every stream on all three NATS nodes", async () => {
    // a node's monitoring port reports the streams it leads: ask each node
    const streams: { name: string; config?: { num_replicas?: number }; cluster?: { replicas?: unknown[] } }[] = [];
    let clusterSize: number | undefined;
    for (const node of ["nats", "nats-2", "nats-3"]) {
      const { stdout } = await execFileP("docker", [
        "exec",
        await containerOf(node),
        "wget",
        "-qO-",
        "http://127.0.0.1:8222/jsz?accounts=true&streams=true&config=true",
      ]);
      const jsz = JSON.parse(stdout) as {
        meta_cluster?: { cluster_size?: number };
        account_details?: { stream_detail?: typeof streams }[];
      };
      clusterSize ??= jsz.meta_cluster?.cluster_size;
      streams.push(...(jsz.account_details ?? []).flatMap((a) => a.stream_detail ?? []));
    }
    expect(clusterSize).toBe(3);
    const events = streams.find((s) => s.name === "CODEFLEET_EVENTS");
    expect(events, JSON.stringify(streams.map((s) => s.name))).toBeDefined();
    expect(events?.config?.num_replicas).toBe(3);
    expect(events?.cluster?.replicas).toHaveLength(2); // the two copies besides the leader's
  });

  it("takes 20 tasks through the loss of one NATS node and one runner host: 20/20 succeed, each branch pushed once", async () => {
    const ids = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const res = await api<Task>("/v1/tasks", { method: "POST", body: JSON.stringify(task(i)) });
        expect(res.status).toBe(202);
        return res.body.id;
      }),
    );
    // both hosts at work before host-b goes
    await waitFor(
      "both runner hosts to have started tasks",
      async () => {
        const runners = new Set<string>();
        for (const id of ids)
          for (const a of (await api<Task>(`/v1/tasks/${id}`)).body.attempts ?? []) if (a.runnerId) runners.add(a.runnerId);
        return runners.size === 2;
      },
      60_000,
      250,
    );
    // a whole host dies: its runner, its repo-pool and the task containers it ran
    const hostB = `${stack.project}-host-b`;
    await execFileP("docker", ["kill", "-s", "KILL", await containerOf("runner-b"), await containerOf("repo-pool-b")]);
    const { stdout: orphans } = await execFileP("docker", ["ps", "-q", "--filter", `label=codefleet.runner-id=${hostB}`]);
    if (orphans.trim()) await execFileP("docker", ["kill", "-s", "KILL", ...orphans.trim().split("\n")]);
    // and one NATS node
    await execFileP("docker", ["kill", "-s", "KILL", await containerOf("nats-2")]);

    const tasks = await waitForTasks<Task>(stack, ids, 300_000, async (unfinished) => {
      const stuck = await Promise.all(unfinished.map(async (id) => JSON.stringify((await api<Task>(`/v1/tasks/${id}`)).body)));
      return `${stuck.join("\n")}\n${await stack.stack("logs", "--tail=60", "runner").catch(() => "")}`;
    });
    expect(
      tasks.filter((t) => t.status !== "succeeded").map((t) => `${t.id} ${t.status} ${t.reasonCode}`),
      "tasks that did not succeed",
    ).toEqual([]);
    // host-b's tasks were taken over by host-a, from host-a's own repo-pool
    const rescued = tasks.filter((t) => (t.attempts ?? []).some((a) => a.runnerId === hostB) && t.attempts?.at(-1)?.runnerId !== hostB);
    console.log(
      `cluster chaos: ${rescued.length} of 20 tasks moved from host-b to host-a; attempts taken: ${JSON.stringify(tasks.map((t) => t.attempts?.length ?? 0))}`,
    );
    for (const t of tasks) {
      const reflog = await stackGit(stack, "reflog", "show", "--format=%H", `refs/heads/${t.branch}`);
      expect(reflog.split("\n").filter(Boolean), t.id).toHaveLength(1);
    }
  }, 600_000);
});
