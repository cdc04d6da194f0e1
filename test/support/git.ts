import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { freePort, waitFor } from "./processes.js";

const execFileP = promisify(execFile);

export async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP("git", ["-c", "safe.directory=*", ...args], {
    cwd,
    maxBuffer: 256 * 1024 * 1024,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "test",
      GIT_AUTHOR_EMAIL: "test@example.com",
      GIT_COMMITTER_NAME: "test",
      GIT_COMMITTER_EMAIL: "test@example.com",
    },
  });
  return stdout.trim();
}

export type TestRepo = { bare: string; fileUrl: string; work: string; root: string; cleanup(): void };

/** A bare repository with one commit of `files` on main, plus a working clone to make more commits. */
export async function createTestRepo(
  files: Record<string, string> = { "README.md": "# sample\n" },
  name = "sample.git",
): Promise<TestRepo> {
  const root = mkdtempSync(join(tmpdir(), "cf-git-"));
  // codefleet's git runs as its own uid (never root): the remote must be reachable and writable by it
  chmodSync(root, 0o755);
  const bare = join(root, name);
  await execFileP("git", ["init", "--quiet", "--bare", "--shared=0777", "--initial-branch=main", bare]);
  await execFileP("git", ["-C", bare, "config", "receive.denyNonFastForwards", "false"]);
  const work = join(root, "work");
  await execFileP("git", ["clone", "--quiet", bare, work]);
  await git(work, "checkout", "--quiet", "-B", "main");
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(work, path)), { recursive: true });
    writeFileSync(join(work, path), content);
  }
  await git(work, "add", "-A");
  await git(work, "commit", "--quiet", "-m", "initial");
  await git(work, "push", "--quiet", "origin", "main");
  return { bare, fileUrl: `file://${bare}`, work, root, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export async function commitFile(repo: TestRepo, path: string, content: string, message = `change ${path}`): Promise<string> {
  mkdirSync(dirname(join(repo.work, path)), { recursive: true });
  writeFileSync(join(repo.work, path), content);
  await git(repo.work, "add", "-A");
  await git(repo.work, "commit", "--quiet", "-m", message);
  await git(repo.work, "push", "--quiet", "origin", "HEAD:main");
  return git(repo.work, "rev-parse", "HEAD");
}

export type GitServer = { url: (repoName: string) => string; stop(): Promise<void> };

/** `git daemon` serving every repository under `baseDir` over git://, push enabled. */
export async function startGitDaemon(baseDir: string, host = "127.0.0.1"): Promise<GitServer> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    "git",
    [
      "daemon",
      "--reuseaddr",
      "--export-all",
      "--enable=receive-pack",
      `--base-path=${baseDir}`,
      `--listen=${host}`,
      `--port=${port}`,
      baseDir,
    ],
    { stdio: "ignore" },
  );
  await waitFor(
    "git daemon",
    async () => {
      try {
        await execFileP("git", ["ls-remote", `git://${host}:${port}/`], { timeout: 2000 });
        return true;
      } catch (e) {
        return !String((e as Error).message).includes("Connection refused");
      }
    },
    10_000,
    100,
  );
  return {
    url: (name) => `git://${host}:${port}/${name}`,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

/**
 * Smart HTTP through `git http-backend`, with HTTP Basic auth when credentials are given: the
 * kind of remote a private GitHub/GitLab repository is.
 */
export async function startGitHttpServer(opts: {
  root: string;
  username?: string;
  password?: string;
  host?: string;
}): Promise<GitServer & { requests: string[] }> {
  const requests: string[] = [];
  const execPath = (await execFileP("git", ["--exec-path"])).stdout.trim();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    requests.push(`${req.method} ${url.pathname}`);
    if (opts.password) {
      const expected = `Basic ${Buffer.from(`${opts.username ?? "x-access-token"}:${opts.password}`).toString("base64")}`;
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { "www-authenticate": 'Basic realm="git"' });
        res.end("unauthorized");
        return;
      }
    }
    const cgi = spawn(join(execPath, "git-http-backend"), [], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: opts.root,
        GIT_HTTP_EXPORT_ALL: "1",
        GIT_CONFIG_COUNT: "2",
        GIT_CONFIG_KEY_0: "http.receivepack",
        GIT_CONFIG_VALUE_0: "true",
        GIT_CONFIG_KEY_1: "safe.directory",
        GIT_CONFIG_VALUE_1: "*",
        REMOTE_USER: "tester",
        REQUEST_METHOD: req.method ?? "GET",
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
        ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {}),
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const idx = head.indexOf("\r\n\r\n");
      if (idx < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, idx).toString().split("\r\n")) {
        const i = line.indexOf(":");
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === "status") status = Number.parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(idx + 4));
    });
    cgi.on("close", () => res.end());
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, opts.host ?? "127.0.0.1", r));
  return {
    requests,
    url: (name) => `http://${opts.host ?? "127.0.0.1"}:${port}/${name}`,
    stop: () => new Promise((r) => server.close(() => r())),
  };
}
