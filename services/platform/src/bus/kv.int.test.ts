import { setTimeout as sleep } from "node:timers/promises";
import { testNamespace } from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Bus } from "./bus.js";
import { connectNats } from "./connection.js";

let nc: NatsConnection;
let bus: Bus;

beforeAll(async () => {
  nc = await connectNats({ servers: inject("natsUrl"), name: "bus-kv-int-test" });
  bus = await Bus.create(nc, { namespace: testNamespace() });
});
afterAll(async () => {
  await nc.drain();
});

const bucket = () => `${testNamespace()}_kv`;

describe("a compare-and-set KV bucket", () => {
  it("creates a key once, updates it only at its latest revision, deletes it only at its latest revision", async () => {
    const kv = await bus.openKv(bucket(), { history: 1, storage: "memory" });
    expect(await kv.get("k")).toBeUndefined();
    const r1 = await kv.create("k", "one");
    expect(r1).toBeGreaterThan(0);
    expect(await kv.create("k", "again")).toBeUndefined(); // it exists
    expect(await kv.get("k")).toEqual({ value: "one", revision: r1 });

    const r2 = await kv.update("k", "two", r1 as number);
    expect(r2).toBeGreaterThan(r1 as number);
    expect(await kv.update("k", "stale", r1 as number)).toBeUndefined(); // another write came first
    expect(await kv.get("k")).toEqual({ value: "two", revision: r2 });

    await kv.delete("k", r1 as number); // not the latest: nothing happens
    expect((await kv.get("k"))?.value).toBe("two");
    await kv.delete("k", r2 as number);
    expect(await kv.get("k")).toBeUndefined();
    // a deleted key can be created again
    expect(await kv.create("k", "three")).toBeGreaterThan(r2 as number);
    expect((await kv.get("k"))?.value).toBe("three");
  });

  it("lets exactly one of many writers racing for the same key and revision win", async () => {
    const name = bucket();
    const kv = await bus.openKv(name, { history: 1, storage: "memory" });
    const creates = await Promise.all(Array.from({ length: 8 }, (_, i) => kv.create("lease", `w${i}`)));
    expect(creates.filter((r) => r !== undefined)).toHaveLength(1);
    const { revision } = (await kv.get("lease")) as { revision: number };
    // a second handle on the same bucket (another replica) sees the same key
    const other = await bus.openKv(name, { history: 1, storage: "memory" });
    const updates = await Promise.all([kv.update("lease", "a", revision), other.update("lease", "b", revision)]);
    expect(updates.filter((r) => r !== undefined)).toHaveLength(1);
  });

  it("expires a key nobody rewrites within the bucket's ttl", async () => {
    const kv = await bus.openKv(bucket(), { history: 1, ttlMs: 1000, storage: "memory" });
    await kv.create("lease", "me");
    expect((await kv.get("lease"))?.value).toBe("me");
    await sleep(1600);
    expect(await kv.get("lease")).toBeUndefined();
    expect(await kv.create("lease", "you")).toBeGreaterThan(0);
  });
});
