import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, realpath, rm } from "node:fs/promises";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execInvocation } from "./exec.js";

/**
 * The exec prelude runs here in real shells (Debian's dash, which agent images based on Debian's
 * node images have as `sh`, and bash) exactly as the pod gets it: the command line, then the framed
 * stdin with stdin left open, as the driver leaves it (the v4 channel protocol cannot half-close).
 */
async function run(
  shell: string[],
  cmd: string[],
  o: Parameters<typeof execInvocation>[1],
): Promise<{ code: number | null; stdout: Buffer; stderr: string; ms: number }> {
  const inv = execInvocation(cmd, o);
  const [, ...args] = inv.command; // "sh" → the shell under test
  const started = Date.now();
  const child = spawn(shell[0] as string, [...shell.slice(1), ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
  });
  const out: Buffer[] = [];
  let err = "";
  child.stdout.on("data", (c: Buffer) => out.push(c));
  child.stderr.on("data", (c: Buffer) => {
    err += c.toString();
  });
  child.stdin.on("error", () => undefined);
  child.stdin.write(inv.stdin); // and never end(): the command must see EOF anyway
  const code = await new Promise<number | null>((resolve) => {
    const guard = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("close", (c, signal) => {
      clearTimeout(guard);
      // a process killed by a signal is reported by the exec API as 128 + the signal, as a shell does
      resolve(signal ? 128 + constants.signals[signal] : c);
    });
  });
  child.stdin.destroy();
  return { code, stdout: Buffer.concat(out), stderr: err, ms: Date.now() - started };
}

let dir: string;
beforeAll(async () => {
  dir = await realpath(await mkdtemp(join(tmpdir(), "cf-k8s-exec-")));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// bash reads ~/.bashrc when its stdin is a socket (as node's pipes are): --norc, as a pod's would not
for (const shell of [["/bin/sh"], ["bash", "--norc"]]) {
  describe(`the exec prelude under ${shell.join(" ")}`, () => {
    it("exports every value exactly (newlines, quotes, $, unicode, trailing newline, empty)", async () => {
      const env = { A: "line1\nline2\n", B: `it's "quoted" $HOME \`x\` \\n`, C: "ünïcødé ✓", D: "", E: "=a=b=" };
      const r = await run(shell, ["sh", "-c", 'for v in A B C D E; do eval "printf %s \\"\\$$v\\""; printf "\\0"; done'], {
        env,
        workdir: dir,
        timeoutMs: 10_000,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString().split("\0").slice(0, 5)).toEqual(Object.values(env));
    });

    it("runs in the working directory, and fails with 126 when there is none", async () => {
      const r = await run(shell, ["pwd"], { workdir: dir, timeoutMs: 10_000 });
      expect(r.stdout.toString().trim()).toBe(dir);
      expect((await run(shell, ["pwd"], { workdir: join(dir, "missing"), timeoutMs: 10_000 })).code).toBe(126);
    });

    it("hands on exactly the command's stdin (binary, 1 MiB) and then end-of-file, though the exec's stdin stays open", async () => {
      const input = randomBytes(1024 * 1024);
      const r = await run(shell, ["sh", "-c", "sha256sum | cut -d' ' -f1; exit 3"], { stdin: input, workdir: dir, timeoutMs: 10_000 });
      expect(r.stdout.toString().trim()).toBe(createHash("sha256").update(input).digest("hex"));
      expect(r.code).toBe(3);
    });

    it("gives a command without stdin end-of-file at once", async () => {
      const r = await run(shell, ["cat"], { workdir: dir, timeoutMs: 10_000 });
      expect(r.code).toBe(0);
      expect(r.stdout.length).toBe(0);
      expect(r.ms).toBeLessThan(5000);
    });

    it("passes exit codes through and kills at the wall-clock limit with 137", async () => {
      expect((await run(shell, ["sh", "-c", "exit 7"], { workdir: dir, timeoutMs: 10_000 })).code).toBe(7);
      expect((await run(shell, ["no-such-command-here"], { workdir: dir, timeoutMs: 10_000 })).code).toBe(127);
      const slow = await run(shell, ["sleep", "30"], { workdir: dir, timeoutMs: 1000 });
      expect(slow.code).toBe(137);
      expect(slow.ms).toBeLessThan(5000);
    });
  });
}
