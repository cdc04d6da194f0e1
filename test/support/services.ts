import { type ChildProcess, spawn } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "./processes.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export type ServiceProcess = {
  child: ChildProcess;
  output(): string;
  /** Sends a signal and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
};

/**
 * Runs a service's main.ts as a real process (TypeScript through tsx, workspace packages from
 * source), so tests can kill -9 it and start it again.
 */
export function spawnService(mainTs: string, env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", resolve(REPO_ROOT, mainTs)], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  return {
    child,
    output: () => out,
    kill: async (signal = "SIGKILL") => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill(signal);
      await exited;
    },
  };
}

export async function waitForHttp(url: string, timeoutMs = 60_000, proc?: ServiceProcess): Promise<void> {
  await waitFor(
    `${url} to answer`,
    async () => {
      if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
        throw new Error(`process exited early:\n${proc.output()}`);
      }
      const res = await fetch(url).catch(() => undefined);
      return res?.ok ?? false;
    },
    timeoutMs,
    200,
  );
}
