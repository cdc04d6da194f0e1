import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, inject, it } from "vitest";
import { connectNats } from "./connection.js";

/** A free local port (nothing listens on it once this returns). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Forwards `port` to the test's NATS server: NATS "coming up" there. */
function forward(port: number): Promise<Server> {
  const target = new URL(inject("natsUrl").replace(/^nats:/, "http:"));
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  server.on("close", () => {
    for (const s of sockets) s.destroy();
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) s.close();
});

describe("connecting to NATS", () => {
  it("waits for a server that comes up late, saying so", async () => {
    const port = await freePort();
    const warnings: Record<string, unknown>[] = [];
    const connecting = connectNats({
      servers: `nats://127.0.0.1:${port}`,
      name: "late",
      connectTimeoutMs: 20_000,
      log: (_level, msg, fields) => {
        if (msg.includes("not reachable")) warnings.push(fields ?? {});
      },
    });
    await sleep(1200);
    servers.push(await forward(port));
    const nc = await connecting;
    expect(nc.isClosed()).toBe(false);
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings[0]).toMatchObject({ attempt: 1 });
    await nc.close();
  });

  it("gives up after connectTimeoutMs with nats_unreachable", async () => {
    const port = await freePort();
    const started = Date.now();
    await expect(connectNats({ servers: `nats://127.0.0.1:${port}`, name: "never", connectTimeoutMs: 1500 })).rejects.toMatchObject({
      code: "nats_unreachable",
    });
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
