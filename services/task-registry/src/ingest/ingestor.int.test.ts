import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { Writable } from "node:stream";
import { createEvent, newTaskId, type TaskSpec } from "@codefleet/contracts";
import { createLogger } from "@codefleet/platform/runtime";
import { createTestDatabase, freePort, testNamespace, waitFor } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadRegistryConfig } from "../config.js";
import { type RegistryService, startRegistry } from "../service.js";

/**
 * The ingestor holds a batch while the database is away (retrying with backoff, keeping its
 * messages alive) and appends it once the database is back: nothing is lost or dead-lettered.
 * The registry reaches Postgres through a TCP proxy this test cuts and restores.
 */

const TOKEN = "ingest-test-token-0123456789";
const spec: TaskSpec = {
  repo: { url: "https://git.example.com/acme/app.git", ref: "main" },
  title: "held while the database is away",
  prompt: "x",
  agent: { kind: "script", steps: [{ run: "true" }] },
};

/** A TCP proxy to Postgres that can be taken down (listener closed, connections cut) and brought back. */
class PausableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}
  up(): Promise<void> {
    if (this.server) return Promise.resolve();
    const server = createServer((client) => {
      const upstream = tcpConnect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("error", () => undefined);
        s.on("close", () => this.sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
    });
    this.server = server;
    return new Promise((resolve) => server.listen(this.port, "127.0.0.1", () => resolve()));
  }
  down(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

let svc: RegistryService;
let proxy: PausableProxy;
let dropDb: () => Promise<void>;
const logLines: { msg?: string; attempt?: number }[] = [];

beforeAll(async () => {
  const database = await createTestDatabase(inject("databaseUrl"));
  dropDb = database.drop;
  const real = new URL(database.url);
  proxy = new PausableProxy(await freePort(), { host: real.hostname, port: Number(real.port) });
  await proxy.up();
  const viaProxy = new URL(database.url);
  viaProxy.port = String(proxy.port);
  const config = loadRegistryConfig({
    DATABASE_URL: viaProxy.toString(),
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    CODEFLEET_API_TOKENS: TOKEN,
    NATS_STORAGE: "memory",
    CODEFLEET_REPO_ALLOWED_HOSTS: "git.example.com/acme",
  });
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  svc = await startRegistry(config, { logger: createLogger({ service: "task-registry", level: "warn", destination }) });
});

afterAll(async () => {
  await proxy?.up().catch(() => undefined);
  await svc?.stop();
  await dropDb?.();
});

const auth = { authorization: `Bearer ${TOKEN}` };
const status = async (id: string) => {
  const res = await svc.app.inject({ method: "GET", url: `/v1/tasks/${id}`, headers: auth });
  return res.statusCode === 200 ? (res.json() as { status: string }).status : undefined;
};

describe("ingesting while the database is away", () => {
  it("holds the batch, retrying, and appends it when the database is back", async () => {
    const before = newTaskId();
    await svc.bus.publish(createEvent("task.submitted", { taskId: before, producer: "dispatcher", data: { spec, submittedVia: "bus" } }));
    await waitFor("the first task projected", async () => (await status(before)) === "queued", 15_000, 50);

    await proxy.down();
    const held = newTaskId();
    await svc.bus.publish(createEvent("task.submitted", { taskId: held, producer: "dispatcher", data: { spec, submittedVia: "bus" } }));
    await waitFor(
      "the ingestor to retry",
      async () => logLines.filter((l) => l.msg?.includes("holding the batch")).length >= 2,
      20_000,
      50,
    );
    const retries = logLines.filter((l) => l.msg?.includes("holding the batch"));
    expect(retries.map((l) => l.attempt).slice(0, 2)).toEqual([1, 2]);

    await proxy.up();
    await waitFor("the held task projected", async () => (await status(held)) === "queued", 30_000, 100);
    expect(await svc.bus.deadLetters("registry-ingest")).toEqual([]);
  });
});
