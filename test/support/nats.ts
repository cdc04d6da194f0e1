import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dockerAvailable, dockerPort, execFileP, findExecutable, freePort, spawnDaemon, waitFor } from "./processes.js";

export type RunningServer = { url: string; stop(): Promise<void>; how: string };

function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port }, () => {
      s.end();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

/** The NATS server config we use in tests and in deploy/: JetStream on file storage, fsync on every write where the server supports it. */
export function natsConfig(opts: { port: number; storeDir: string; serverVersion: string; host?: string }): string {
  const [maj = 0, min = 0] = opts.serverVersion.split(".").map(Number);
  const syncAlways = maj > 2 || (maj === 2 && min >= 10);
  return [
    `listen: ${opts.host ?? "127.0.0.1"}:${opts.port}`,
    "max_payload: 8MB",
    "jetstream {",
    `  store_dir: ${JSON.stringify(opts.storeDir)}`,
    syncAlways ? "  sync_interval: always" : "  # sync_interval needs NATS >= 2.10",
    "}",
    "",
  ].join("\n");
}

/**
 * A NATS server for the test run: NATS_URL when set; else a local nats-server binary; else a
 * container of NATS_IMAGE (default nats:2.11-alpine).
 */
export async function startNats(): Promise<RunningServer> {
  if (process.env.NATS_URL) return { url: process.env.NATS_URL, stop: async () => undefined, how: "NATS_URL" };
  const bin = findExecutable("nats-server", ["/usr/sbin", "/usr/local/sbin"]);
  if (bin) {
    const { stdout } = await execFileP(bin, ["--version"]);
    const version = /v?(\d+\.\d+\.\d+)/.exec(stdout)?.[1] ?? "2.9.0";
    const dir = mkdtempSync(join(tmpdir(), "cf-nats-"));
    const port = await freePort();
    const conf = join(dir, "nats.conf");
    writeFileSync(conf, natsConfig({ port, storeDir: join(dir, "js"), serverVersion: version }));
    const child = spawnDaemon(bin, ["-c", conf]);
    await waitFor("nats-server", () => tcpOpen("127.0.0.1", port), 20_000);
    return {
      url: `nats://127.0.0.1:${port}`,
      how: `nats-server ${version}`,
      stop: async () => {
        child.kill("SIGTERM");
        await new Promise((r) => child.once("exit", r));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  if (await dockerAvailable()) {
    const image = process.env.NATS_IMAGE ?? "nats:2.11-alpine";
    const name = `cf-test-nats-${process.pid}`;
    await execFileP("docker", [
      "run",
      "-d",
      "--rm",
      "--name",
      name,
      "--label",
      "codefleet.test=1",
      "-p",
      "127.0.0.1::4222",
      image,
      "nats-server",
      "-js",
    ]);
    const port = await dockerPort(name, 4222);
    await waitFor("nats container", () => tcpOpen("127.0.0.1", port), 30_000);
    return {
      url: `nats://127.0.0.1:${port}`,
      how: `docker ${image}`,
      stop: async () => void (await execFileP("docker", ["rm", "-f", name]).catch(() => undefined)),
    };
  }
  throw new Error("integration tests need NATS: set NATS_URL, install nats-server, or make a Docker engine available");
}

/**
 * A NATS server of its own with accounts: the authorization block rendered from `users` (the same
 * code that renders deploy/nats/auth.conf), passwords passed in its environment the way compose does.
 * Needs the nats-server binary (CI installs Debian's 2.9).
 */
export async function startNatsWithUsers(opts: {
  authorization: string;
  passwords: Record<string, string>;
}): Promise<RunningServer & { version: string }> {
  const bin = findExecutable("nats-server", ["/usr/sbin", "/usr/local/sbin"]);
  if (!bin) throw new Error("the NATS accounts tests need the nats-server binary (apt-get install nats-server)");
  const { stdout } = await execFileP(bin, ["--version"]);
  const version = /v?(\d+\.\d+\.\d+)/.exec(stdout)?.[1] ?? "2.9.0";
  const dir = mkdtempSync(join(tmpdir(), "cf-nats-auth-"));
  const port = await freePort();
  const conf = join(dir, "nats.conf");
  writeFileSync(join(dir, "auth.conf"), opts.authorization);
  writeFileSync(conf, `${natsConfig({ port, storeDir: join(dir, "js"), serverVersion: version })}include ./auth.conf\n`);
  const child = spawnDaemon(bin, ["-c", conf], { env: { ...process.env, ...opts.passwords } });
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  await waitFor("nats-server with users", async () => {
    if (exited) throw new Error("nats-server with users exited at start (bad config?)");
    return tcpOpen("127.0.0.1", port);
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    how: `nats-server ${version} with users`,
    version,
    stop: async () => {
      if (!exited) {
        child.kill("SIGTERM");
        await new Promise((r) => child.once("exit", r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
