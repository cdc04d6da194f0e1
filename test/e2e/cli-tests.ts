import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Stack, stackGit } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The `codefleet` CLI as a user runs it (a child process, exit codes and all) against the compose
 * stack. Registered by stack.e2e.test.ts, so both share one stack.
 */

const BIN = join(import.meta.dirname, "../../services/cli/src/bin.ts");
let stack: Stack;
let dir: string;
const gitServer = (...args: string[]) => stackGit(stack, ...args);

type Run = { code: number; stdout: string; stderr: string };

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "--conditions=source", BIN, ...args],
      {
        env: {
          PATH: process.env.PATH,
          HOME: dir,
          CODEFLEET_URL: stack.registryUrl,
          CODEFLEET_TOKEN: stack.token,
          CODEFLEET_JAEGER_URL: stack.jaegerUrl,
          ...env,
        },
        timeout: 240_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A TCP proxy that cuts every connection after `cutAfterMs`: a flaky network between CLI and registry. */
async function flakyProxy(target: URL, cutAfterMs: number): Promise<{ url: string; cuts: () => number; close: () => Promise<void> }> {
  let cuts = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    client.pipe(upstream).pipe(client);
    sockets.add(client);
    const cut = setTimeout(() => {
      cuts++;
      client.destroy();
      upstream.destroy();
    }, cutAfterMs);
    const done = () => {
      clearTimeout(cut);
      sockets.delete(client);
      upstream.destroy();
    };
    client.on("close", done).on("error", done);
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    cuts: () => cuts,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const TASK_YAML = `
repo:
  url: git://git-server:9418/sample.git
  ref: main
title: make the greeting mention codefleet (from the CLI)
prompt: Change greet.sh so that it greets from codefleet.
agent:
  kind: script
  steps:
    - run: printf '#!/bin/sh\\necho "hello from codefleet"\\n' > greet.sh
test:
  command: sh test.sh
labels:
  via: cli
`;

export function describeCli(getStack: () => Stack): void {
  describe("the codefleet CLI against the compose stack", () => {
    let taskId = "";

    beforeAll(() => {
      stack = getStack();
      dir = mkdtempSync(join(tmpdir(), "cf-cli-"));
    });

    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    it("submits a YAML task file, follows it live and exits 0 when it succeeds", async () => {
      writeFileSync(join(dir, "task.yaml"), TASK_YAML);
      const r = await cli(["submit", "-f", join(dir, "task.yaml"), "--label", "run=e2e", "--follow"]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      taskId = /submitted (tsk_\S+)/.exec(r.stdout)?.[1] ?? "";
      expect(taskId).toMatch(/^tsk_/);
      // phase by phase, then the outcome with branch, commit, diff, artifact links and the trace link
      const order = ["── fetch ──", "── implement ──", "── test ──", "── push ──"].map((h) => r.stdout.indexOf(h));
      expect(order.every((i) => i >= 0)).toBe(true);
      expect([...order].sort((a, b) => a - b)).toEqual(order);
      expect(r.stdout).toMatch(new RegExp(`task\\s+${taskId}\\s+succeeded`));
      expect(r.stdout).toMatch(new RegExp(`branch\\s+codefleet/${taskId}`));
      expect(r.stdout).toMatch(/commit\s+[0-9a-f]{40}/);
      expect(r.stdout).toMatch(/diff\s+1 file changed \(greet\.sh\), \+1 −1/);
      expect(r.stdout).toContain(`${stack.artifactStoreUrl}/v1/artifacts/`);
      expect(r.stdout).toMatch(new RegExp(`trace\\s+${stack.jaegerUrl}/trace/[0-9a-f]{32}`));
    });

    it("lists, shows, reads events and downloads artifacts, as text and as JSON", async () => {
      const list = await cli(["list", "--label", "via=cli", "--json"]);
      expect(list.code).toBe(0);
      expect((JSON.parse(list.stdout) as { items: { id: string }[] }).items.map((t) => t.id)).toEqual([taskId]);
      const table = await cli(["list", "--status", "succeeded", "--limit", "200"]);
      expect(table.stdout).toMatch(new RegExp(`^${taskId}\\s+succeeded\\s+push\\s+`, "m"));

      const show = await cli(["show", taskId, "--json"]);
      const view = JSON.parse(show.stdout) as { status: string; labels: Record<string, string>; phases: unknown[] };
      expect(view).toMatchObject({ status: "succeeded", labels: { via: "cli", run: "e2e" } });
      expect(view.phases).toHaveLength(5); // fetch, implement, test, rebase (skipped: main did not move), push

      const events = await cli(["events", taskId, "--json"]);
      const types = (JSON.parse(events.stdout) as { items: { type: string }[] }).items.map((e) => e.type);
      expect(types[0]).toBe("task.submitted");
      expect(types).toContain("run.finished");

      const out = join(dir, "changes.diff");
      const get = await cli(["artifacts", "get", taskId, "changes.diff", "-o", out]);
      expect(get.code).toBe(0);
      expect(readFileSync(out, "utf8")).toContain('+echo "hello from codefleet"');
      const toStdout = await cli(["artifacts", "get", taskId, "changes.diff"]);
      expect(toStdout.stdout).toBe(readFileSync(out, "utf8"));
      const artifacts = await cli(["artifacts", "list", taskId]);
      expect(artifacts.stdout).toMatch(/changes\.diff/);
    });

    it("replies to a finished task: a follow-up turn pushes a second commit on the same branch, and show lists the turns", async () => {
      const before = (await gitServer("rev-parse", `refs/heads/codefleet/${taskId}`)).trim();
      const r = await cli([
        "reply",
        taskId,
        "also say goodbye",
        "--step",
        'echo "echo goodbye from turn $CODEFLEET_TURN" >> greet.sh',
        "--follow",
      ]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`follow-up ${taskId} turn 2`);
      expect(r.stdout).toMatch(new RegExp(`task\\s+${taskId}\\s+succeeded`));
      const after = (await gitServer("rev-parse", `refs/heads/codefleet/${taskId}`)).trim();
      expect(after).not.toBe(before);
      expect((await gitServer("rev-parse", `${after}^`)).trim()).toBe(before);
      expect(await gitServer("show", `${after}:greet.sh`)).toContain("echo goodbye from turn 2");
      const show = JSON.parse((await cli(["show", taskId, "--json"])).stdout) as {
        turn: number;
        turns: { turn: number; status: string }[];
      };
      expect(show.turn).toBe(2);
      expect(show.turns.map((t) => [t.turn, t.status])).toEqual([
        [1, "succeeded"],
        [2, "succeeded"],
      ]);
      expect((await cli(["show", taskId])).stdout).toMatch(/turns[\s\S]*2\s+succeeded\s+[0-9a-f]{12}\s+also say goodbye/);
    });

    it("resumes `logs --follow` across dropped connections without losing or repeating a line", async () => {
      const proxy = await flakyProxy(new URL(stack.registryUrl), 1200);
      try {
        const submitted = await cli([
          "submit",
          "--repo",
          "git://git-server:9418/sample.git",
          "--title",
          "slow output",
          "--step",
          "for i in $(seq 1 40); do echo line-$i; sleep 0.15; done",
          "--no-push",
        ]);
        expect(submitted.code).toBe(0);
        const id = submitted.stdout.trim();
        const followed = await cli(["logs", id, "--follow"], { CODEFLEET_URL: proxy.url });
        expect(followed.code).toBe(0);
        expect(proxy.cuts()).toBeGreaterThan(0);
        expect(followed.stderr).toContain("resuming");
        const lines = followed.stdout.split("\n").filter((l) => /^line-\d+$/.test(l));
        expect(lines).toEqual(Array.from({ length: 40 }, (_, i) => `line-${i + 1}`));
        const whole = await cli(["logs", id]);
        expect(followed.stdout).toBe(whole.stdout);
      } finally {
        await proxy.close();
      }
    });

    it("exits with codes that mean something and says what to do", async () => {
      const missing = await cli(["show", "tsk_01M8000000000000000000000Z"]);
      expect(missing.code).toBe(3);
      expect(missing.stderr).toMatch(/task_not_found/);

      const badToken = await cli(["list"], { CODEFLEET_TOKEN: "wrong" });
      expect(badToken.code).toBe(4);
      expect(badToken.stderr).toMatch(/hint: set CODEFLEET_TOKEN/);

      const down = await cli(["list"], { CODEFLEET_URL: "http://127.0.0.1:9" });
      expect(down.code).toBe(5);
      expect(down.stderr).toMatch(/cannot reach the registry/);

      const invalid = await cli(["submit", "--repo", "git://git-server:9418/sample.git", "--title", "x", "--agent", "nope"]);
      expect(invalid.code).toBe(2);
      expect(invalid.stderr).toMatch(/unknown agent 'nope'/);

      const finished = await cli(["cancel", taskId]);
      expect(finished.code).toBe(6);

      const failing = await cli([
        "submit",
        "--repo",
        "git://git-server:9418/sample.git",
        "--title",
        "a test that fails",
        "--step",
        "true",
        "--test",
        "exit 3",
        "--follow",
        "--json",
      ]);
      expect(failing.code).toBe(1);
      const last = JSON.parse(failing.stdout.trim().split("\n").pop() ?? "{}") as { type: string; task: { status: string } };
      expect(last).toMatchObject({ type: "task", task: { status: "failed" } });
    });
  });
}
