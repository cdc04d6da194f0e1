import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The CLI installs like one: `npm pack` bundles it (prepack), and the tarball installs globally
 * offline, with no dependency, into a `codefleet` command that works outside any checkout. And in a
 * checkout, the workspace's `codefleet` bin runs the source without a build. About 5 s.
 */

const run = promisify(execFile);
const CLI_DIR = join(import.meta.dirname, "..");
const ROOT = join(CLI_DIR, "../..");
let dir: string;

/** A command run as a user would: a bare environment, outside the checkout. */
async function codefleet(bin: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(bin, args, {
      cwd: dir,
      env: { PATH: `${join(dir, "global/bin")}:/usr/local/bin:/usr/bin:/bin`, HOME: dir },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "codefleet-install-"));
  const npm = (args: string[], cwd: string) =>
    run("npm", args, { cwd, timeout: 120_000, env: { ...process.env, npm_config_update_notifier: "false" } });
  await npm(["pack", "--pack-destination", dir], CLI_DIR);
  const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
  if (!tarball) throw new Error("npm pack made no tarball");
  // --offline: the tarball must need nothing from a registry
  await npm(["install", "-g", join(dir, tarball), "--prefix", join(dir, "global"), "--offline", "--no-audit", "--no-fund"], dir);
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the packed CLI", () => {
  it("installs as a self-contained package and prints its help", async () => {
    const installed = JSON.parse(readFileSync(join(dir, "global/lib/node_modules/@codefleet/cli/package.json"), "utf8"));
    expect(installed.dependencies ?? {}).toEqual({});
    expect(readdirSync(join(dir, "global/lib/node_modules/@codefleet/cli")).sort()).toEqual(["bin", "bundle", "package.json"]);
    const help = await codefleet("codefleet", ["--help"]);
    expect(help).toMatchObject({ code: 0, stderr: "" });
    expect(help.stdout).toContain("Usage: codefleet <command> [options]");
    expect((await codefleet("codefleet", ["--version"])).stdout.trim()).toBe(installed.version);
  });

  it("validates a task with the bundled schema and reaches for the API with the bundled client", async () => {
    writeFileSync(
      join(dir, "task.yaml"),
      "repo: {url: https://github.com/acme/app.git}\ntitle: t\nprompt: p\nagent: {kind: script, steps: [{run: 'true'}]}\nlimits: {memoryMb: 99999}\n",
    );
    const invalid = await codefleet("codefleet", ["submit", "-f", "task.yaml", "--url", "http://127.0.0.1:9"]);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain("/limits/memoryMb");
    const unreachable = await codefleet("codefleet", ["list", "--url", "http://127.0.0.1:9"]);
    expect(unreachable.code).toBe(5);
  });

  it("leaves no bundle behind in the checkout (postpack)", () => {
    expect(readdirSync(CLI_DIR)).not.toContain("bundle");
  });
});

describe("the checkout's CLI", () => {
  it("runs from the workspace bin without a build", async () => {
    const help = await codefleet(join(ROOT, "node_modules/.bin/codefleet"), ["--help"]);
    expect(help).toMatchObject({ code: 0, stderr: "" });
    expect(help.stdout).toContain("Usage: codefleet <command> [options]");
  });
});
