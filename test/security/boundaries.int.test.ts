import { execFileSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { join } from "node:path";
import { createEvent, newTaskId, type TaskSpec } from "@codefleet/contracts";
import { Bus, connectNats, publishAsDispatcher } from "@codefleet/platform/bus";
import { freePort, git, waitFor } from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { FOREIGN_GIT_TOKEN, type Platform, SECRET, SPECIAL_SECRET, scriptTask, startPlatform } from "./platform.js";

/**
 * The platform's other boundaries, each tried as an attacker with a valid token would: through
 * the API and, where a dispatcher could, straight on the bus (which skips the registry's checks).
 */

let p: Platform;
let nc: NatsConnection;
let bus: Bus;

beforeAll(async () => {
  p = await startPlatform({ databaseUrl: inject("databaseUrl"), natsUrl: inject("natsUrl") });
  // a second repository on the same server, so that two tasks at once do not wait for one slot
  await git(p.repo.root, "clone", "--quiet", "--bare", p.repo.bare, join(p.repo.root, "other.git"));
  execFileSync("chmod", ["-R", "a+rwX", join(p.repo.root, "other.git")]);
  nc = await connectNats({ servers: inject("natsUrl"), name: "security-test" });
  bus = await Bus.create(nc, { namespace: p.env.CODEFLEET_NAMESPACE as string });
}, 240_000);

afterAll(async () => {
  await nc?.drain();
  await p?.stop();
});

/** What a dispatcher on NATS can do: publish task.submitted on its ingress subject. */
async function publishOnBus(spec: TaskSpec): Promise<string> {
  const taskId = newTaskId();
  await publishAsDispatcher(
    nc,
    { namespace: bus.topology.namespace, tenant: "default", dispatcher: "security-test" },
    createEvent("task.submitted", { taskId, producer: "dispatcher", data: { spec, submittedVia: "bus" } }),
  );
  return taskId;
}

async function problem(res: Response): Promise<{ status: number; code: string; body: string }> {
  const body = await res.text();
  return { status: res.status, code: (JSON.parse(body) as { code: string }).code, body };
}

describe("the marker channel of these tests", () => {
  it("sees a payload that runs on the host as the runner's or repo-pool's git user", () => {
    for (const uid of ["10001", "1000"])
      execFileSync("setpriv", [
        `--reuid=${uid}`,
        `--regid=${uid}`,
        "--clear-groups",
        "sh",
        "-c",
        `id > ${join(p.markers, `canary-${uid}`)}`,
      ]);
    expect(readdirSync(p.markers).sort()).toEqual(["canary-1000", "canary-10001"]);
    for (const f of readdirSync(p.markers)) rmSync(join(p.markers, f));
  });
});

describe("repository URLs and git credentials", () => {
  it("refuses file:// to repo-pool's own mirrors at submission (422) and on the bus", async () => {
    // a first task makes a mirror exist
    const first = await p.finished(await p.submitOk(scriptTask(p, ["echo x > X.txt"])));
    expect(first.status).toBe("succeeded");
    const mirrors = join(p.dataDir, "repo-pool", "mirrors");
    const mirror = readdirSync(mirrors).find((m) => m.endsWith(".git")) as string;
    const target = `file://${join(mirrors, mirror)}`;
    const refused = await problem(await p.submit(scriptTask(p, ["true"], { repo: { url: target } })));
    expect(refused).toMatchObject({ status: 422, code: "repo_url_file_refused" });
    for (const url of [join(mirrors, mirror), `file://${join(p.dataDir, "repo-pool", "slots")}`, "file:///etc"])
      expect((await problem(await p.submit(scriptTask(p, ["true"], { repo: { url } })))).status).toBe(422);

    const onBus = await publishOnBus(scriptTask(p, ["true"], { repo: { url: target } }));
    const view = await p.finished(onBus, 60_000);
    // refused by the registry's admission before any runner sees it (the runner refuses it too: runner.int.test.ts)
    expect(view).toMatchObject({ status: "rejected", reasonCode: "repo_url_file_refused" });
  });

  it("sends no credentials to a server that asks for them unless the operator configured them for that host", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(401, { "www-authenticate": 'Basic realm="give me your token"' });
      res.end("unauthorized");
    });
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    try {
      const view = await p.finished(await p.submitOk(scriptTask(p, ["true"], { repo: { url: `http://127.0.0.1:${port}/victim.git` } })));
      expect(view).toMatchObject({ status: "failed", reasonCode: "git_auth_failed" });
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.filter((h) => h.authorization !== undefined)).toEqual([]);
      expect(JSON.stringify(view)).not.toContain(FOREIGN_GIT_TOKEN);
    } finally {
      server.close();
    }
    // plain http to a host the operator did not allow never leaves the registry
    const refused = await problem(await p.submit(scriptTask(p, ["true"], { repo: { url: "http://198.51.100.7/x.git" } })));
    expect(refused).toMatchObject({ status: 422, code: "repo_url_scheme_refused" });
  });

  it("refuses an agent key sent to an endpoint the operator did not allow, at submission and on the bus", async () => {
    const spec = scriptTask(p, [], {
      agent: { kind: "openai", model: "gpt", baseUrl: "https://collector.evil.example/v1", apiKeySecret: "API_TOKEN" },
    });
    expect(await problem(await p.submit(spec))).toMatchObject({ status: 422, code: "secret_endpoint_not_allowed" });
    const view = await p.finished(await publishOnBus(spec), 60_000);
    // refused by the registry's admission before any runner sees it (the runner refuses it too: runner.int.test.ts)
    expect(view).toMatchObject({ status: "rejected", reasonCode: "secret_endpoint_not_allowed" });
  });
});

describe("credentials in repository URLs", () => {
  it("refuses a bus submission whose URL carries a token, and the token reaches no view", async () => {
    const token = "ghp_inTheUrl0123456789abcdefABCDEFabcd";
    const url = p.daemon.url("sample.git").replace("git://", `https://x-access-token:${token}@`);
    const id = await publishOnBus(scriptTask(p, ["true"], { repo: { url } }));
    const view = await p.finished(id, 60_000);
    // refused by the registry's admission before any runner sees it (the runner refuses it too: runner.int.test.ts)
    expect(view).toMatchObject({ status: "rejected", reasonCode: "repo_url_credentials_refused" });
    expect(JSON.stringify(view)).not.toContain(token);
    expect((await problem(await p.submit(scriptTask(p, ["true"], { repo: { url } })))).status).toBe(422);
  });
});

describe("secrets", () => {
  it("refuses to push a change that holds a task secret (plain, base64 or URL-encoded) and masks the stored diff", async () => {
    const cases: [string, string][] = [
      ['echo "token=$API_TOKEN" > config.env', SECRET],
      ['printf "%s" "xx$API_TOKEN" | base64 -w0 > blob.b64', Buffer.from(`xx${SECRET}`).toString("base64").slice(4, 40)],
      ['node -e "process.stdout.write(encodeURIComponent(process.env.SPECIAL))" > url.txt', encodeURIComponent(SPECIAL_SECRET)],
    ];
    for (const [write, leaked] of cases) {
      const before = await p.remoteState();
      const view = await p.finished(await p.submitOk(scriptTask(p, [write], { secrets: ["API_TOKEN", "SPECIAL"] })));
      expect(view, write).toMatchObject({ status: "failed", reasonCode: "secret_in_diff" });
      expect((await p.remoteState()).refs).toEqual(before.refs);
      const diff = await p.artifactText(view, "changes.diff");
      expect(diff, write).toBeDefined();
      expect(diff, write).not.toContain(leaked);
    }
  });
});

describe("unbounded agent output", () => {
  it("survives an agent that prints 1 GB on one line while another attempt keeps its heartbeats and succeeds", async () => {
    const flood = p.submitOk(
      scriptTask(p, ["head -c 1000000000 /dev/zero | tr '\\0' a", "echo survived > CHANGED.txt"], {
        limits: { timeoutSeconds: 300, memoryMb: 512, cpus: 1 },
      }),
    );
    const calm = p.submitOk(scriptTask(p, ["sleep 5", "echo calm > CALM.txt"], { repo: { url: p.daemon.url("other.git"), ref: "main" } }));
    const [floodId, calmId] = await Promise.all([flood, calm]);
    const [floodView, calmView] = await Promise.all([p.finished(floodId, 300_000), p.finished(calmId, 300_000)]);
    expect(calmView).toMatchObject({ status: "succeeded", attempt: 1 });
    expect(floodView, floodView.failureReason).toMatchObject({ status: "succeeded", attempt: 1 });
    const log = (await p.artifactText(floodView, "task.log")) ?? "";
    expect(log).toContain("log truncated");
    expect(log.length).toBeLessThan(3 * 1024 * 1024);
    expect(p.procs.get("runner")?.child.exitCode).toBeNull();
  }, 360_000);

  it("fails a task that fills its workspace with disk_limit, and nothing else: its neighbour succeeds, the slot is reused", async () => {
    const [fillId, calmId] = await Promise.all([
      p.submitOk(scriptTask(p, ["head -c 200000000 /dev/zero > big.bin", "echo never > CHANGED.txt"])),
      p.submitOk(scriptTask(p, ["sleep 2", "echo calm > CALM.txt"], { repo: { url: p.daemon.url("other.git"), ref: "main" } })),
    ]);
    const [fill, calm] = await Promise.all([p.finished(fillId), p.finished(calmId)]);
    expect(fill, fill.failureReason).toMatchObject({ status: "failed", reasonCode: "disk_limit" });
    expect(calm.status).toBe("succeeded");
    const next = await p.finished(await p.submitOk(scriptTask(p, ["test ! -e big.bin", "echo fits > CHANGED.txt"])));
    expect(next.status, next.failureReason).toBe("succeeded");
  });

  it("reads a test report symlinked to /dev/zero up to its cap and goes on", async () => {
    const view = await p.finished(
      await p.submitOk(
        scriptTask(p, ["ln -s /dev/zero report.xml", "echo ok > CHANGED.txt"], {
          test: { command: "true", report: { path: "report.xml", format: "junit" } },
        }),
      ),
    );
    expect(view.status, view.failureReason).toBe("succeeded");
    expect(p.procs.get("runner")?.child.exitCode).toBeNull();
    const report = (await p.artifactText(view, "test-report.xml")) ?? "";
    expect(report).toContain("report truncated");
    expect(report.length).toBeLessThanOrEqual(11 * 1024 * 1024);
  });
});

describe("leases", () => {
  it("stops an attempt whose slot lease is lost and removes its container before the slot can be reused", async () => {
    const taskId = await p.submitOk(
      scriptTask(p, ["sleep 60", "echo late > CHANGED.txt"], { repo: { url: p.daemon.url("other.git"), ref: "main" } }),
    );
    const db = new pg.Client({ connectionString: p.env.DATABASE_URL });
    await db.connect();
    try {
      await waitFor(
        "the task's slot to be leased",
        async () => (await db.query("select id from repo_pool.slots where task_id = $1", [taskId])).rowCount === 1,
        30_000,
        100,
      );
      await waitFor("its container", async () => containersOf(taskId).length === 1, 30_000, 100);
      // what an outage looks like to the runner: the slot is no longer its own
      await db.query(
        "update repo_pool.slots set task_id = 'tsk_00000000000000000000000000', lease_expires_at = now() + interval '3 seconds' where task_id = $1",
        [taskId],
      );
      await waitFor("the container to go", async () => containersOf(taskId).length === 0, 15_000, 100);
      const view = await p.finished(taskId);
      expect(view).toMatchObject({ status: "failed", reasonCode: "lease_lost" });
      expect(await git(join(p.repo.root, "other.git"), "branch", "--list", `codefleet/${taskId}`)).toBe("");
    } finally {
      await db.end();
    }
  }, 120_000);
});

describe("the environment cache", () => {
  it("keeps a setup's result as it was made: no agent can change it for a later task, and no task's container has it mounted", async () => {
    const setup = { command: "mkdir -p deps && echo clean > deps/lib.sh", cachePaths: ["deps"], cacheKeyFiles: ["README.md"] };
    const poison = [
      // what it got is its own copy: changing it changes nothing for the next task
      "echo 'touch /tmp/pwned' > deps/lib.sh",
      "! grep -q env-cache /proc/mounts",
      "test ! -e /codefleet/env-cache",
    ];
    const task = (steps: string[]) => scriptTask(p, steps, { setup, push: { enabled: false } });
    const first = await p.finished(await p.submitOk(task(poison)));
    expect(first.status, first.reason).toBe("succeeded");
    const second = await p.finished(await p.submitOk(task(['test "$(cat deps/lib.sh)" = clean', ...poison])));
    expect(second.status, second.reason).toBe("succeeded");
    expect(await p.artifactText(second, "task.log")).toContain("from the environment cache");
    const third = await p.finished(await p.submitOk(task(['test "$(cat deps/lib.sh)" = clean'])));
    expect(third.status, third.reason).toBe("succeeded");
    expect(p.markersFound()).toEqual([]);
  }, 180_000);
});

/** The task's containers: labelled with it, or warm ones it adopted (named after it). */
function containersOf(taskId: string): string[] {
  const ids = new Set<string>();
  for (const filter of [`label=codefleet.task-id=${taskId}`, `name=codefleet-${taskId.toLowerCase()}-`])
    for (const id of execFileSync("docker", ["ps", "-aq", "--filter", filter]).toString().split("\n").filter(Boolean)) ids.add(id);
  return [...ids];
}
