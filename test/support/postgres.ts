import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { RunningServer } from "./nats.js";
import { dockerAvailable, dockerPort, execFileP, findExecutable, freePort, postgresBinDirs, spawnDaemon, waitFor } from "./processes.js";

async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query("select 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function unprivilegedUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  for (const user of ["postgres", "nobody"]) {
    try {
      const uid = Number((await execFileP("id", ["-u", user])).stdout.trim());
      const gid = Number((await execFileP("id", ["-g", user])).stdout.trim());
      return { uid, gid };
    } catch {
      /* try the next */
    }
  }
  throw new Error("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as");
}

/**
 * A PostgreSQL server for the test run, as an admin URL: DATABASE_URL when set; else a throwaway
 * cluster from local server binaries (initdb + postgres); else a container of POSTGRES_IMAGE.
 */
export async function startPostgres(): Promise<RunningServer> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, stop: async () => undefined, how: "DATABASE_URL" };
  const dirs = postgresBinDirs();
  const initdb = findExecutable("initdb", dirs);
  const postgres = initdb ? initdb.replace(/initdb$/, "postgres") : undefined;
  if (initdb && postgres) {
    const dir = mkdtempSync(join(tmpdir(), "cf-pg-"));
    const owner = await unprivilegedUser();
    if (owner) chownSync(dir, owner.uid, owner.gid);
    const as = owner ?? {};
    const data = join(dir, "data");
    await new Promise<void>((resolve, reject) => {
      const c = spawnDaemon(initdb, ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"], as);
      c.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`initdb exited ${code}`))));
    });
    const port = await freePort();
    const child = spawnDaemon(
      postgres,
      [
        "-D",
        data,
        "-p",
        String(port),
        "-k",
        dir,
        "-h",
        "127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=400",
      ],
      as,
    );
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    await waitFor("postgres", () => canConnect(url), 30_000, 200);
    return {
      url,
      how: `local ${postgres}`,
      stop: async () => {
        child.kill("SIGINT");
        await new Promise((r) => child.once("exit", r));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  if (await dockerAvailable()) {
    const image = process.env.POSTGRES_IMAGE ?? "postgres:17-alpine";
    const name = `cf-test-pg-${process.pid}`;
    await execFileP("docker", [
      "run",
      "-d",
      "--rm",
      "--name",
      name,
      "--label",
      "codefleet.test=1",
      "-e",
      "POSTGRES_PASSWORD=postgres",
      "-p",
      "127.0.0.1::5432",
      image,
      "-c",
      "fsync=off",
      "-c",
      "max_connections=400",
    ]);
    const port = await dockerPort(name, 5432);
    const url = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`;
    await waitFor("postgres container", () => canConnect(url), 60_000, 500);
    return { url, how: `docker ${image}`, stop: async () => void (await execFileP("docker", ["rm", "-f", name]).catch(() => undefined)) };
  }
  throw new Error("integration tests need PostgreSQL: set DATABASE_URL, install postgresql, or make a Docker engine available");
}

/** A fresh database for one test file; dropped by the returned function. */
export async function createTestDatabase(adminUrl: string, prefix = "cf_test"): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
