import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { promisify } from "node:util";

export const execFileP = promisify(execFile);

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Finds an executable on PATH or in the given extra directories. */
export function findExecutable(name: string, extraDirs: string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":"), ...extraDirs];
  for (const d of dirs) {
    if (d && existsSync(`${d}/${name}`)) return `${d}/${name}`;
  }
  return undefined;
}

/** Debian installs the PostgreSQL server binaries under /usr/lib/postgresql/<major>/bin. */
export function postgresBinDirs(): string[] {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => `${base}/${v}/bin`);
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`);
}

export function spawnDaemon(cmd: string, args: string[], opts: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const child = spawn(cmd, args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: opts.env ?? process.env,
    ...(opts.uid === undefined ? {} : { uid: opts.uid }),
    ...(opts.gid === undefined ? {} : { gid: opts.gid }),
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  child.on("exit", (code, signal) => {
    if (code && code !== 0 && !child.killed) process.stderr.write(`[test-support] ${cmd} exited ${code} ${signal ?? ""}\n${stderr}\n`);
  });
  return child;
}

export async function dockerAvailable(): Promise<boolean> {
  try {
    await execFileP("docker", ["info", "--format", "{{.ServerVersion}}"], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

export async function dockerPort(container: string, port: number): Promise<number> {
  const { stdout } = await execFileP("docker", ["port", container, String(port)]);
  const m = /:(\d+)\s*$/m.exec(stdout.trim().split("\n")[0] ?? "");
  if (!m?.[1]) throw new Error(`no published port ${port} on ${container}: ${stdout}`);
  return Number(m[1]);
}
