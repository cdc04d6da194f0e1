import { Bus, connectNats, type NatsConnection } from "@codefleet/platform/bus";
import { testNamespace } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ClaimStore } from "./claims.js";

let nc: NatsConnection;

beforeAll(async () => {
  nc = await connectNats({ servers: inject("natsUrl"), name: "claims-int-test" });
});
afterAll(async () => {
  await nc.drain();
});

const openClaims = async () => ClaimStore.open(await Bus.create(nc, { namespace: testNamespace() }));

describe("attempt claims (fencing) on a real NATS KV bucket", () => {
  it("claims an attempt once; a newer attempt supersedes it and the older one can no longer advance", async () => {
    const claims = await openClaims();
    const first = await claims.claim("tsk_1", 1, "runner-a");
    expect(first).toBeGreaterThan(0);
    expect(await claims.claim("tsk_1", 1, "runner-b")).toBeUndefined(); // the same attempt, claimed already
    const pushing = await claims.advance("tsk_1", 1, "runner-a", first as number, "pushing");
    expect(pushing).toBeGreaterThan(first as number);

    const second = await claims.claim("tsk_1", 2, "runner-b"); // the redelivery
    expect(second).toBeGreaterThan(pushing as number);
    expect(await claims.advance("tsk_1", 1, "runner-a", pushing as number, "finished")).toBeUndefined();
    expect(await claims.claim("tsk_1", 1, "runner-a")).toBeUndefined(); // an older attempt never comes back
    expect((await claims.current("tsk_1"))?.claim).toMatchObject({ attempt: 2, runnerId: "runner-b", state: "running" });
  });

  it("takes an advance retried after a lost answer as its own", async () => {
    const claims = await openClaims();
    const rev = (await claims.claim("tsk_2", 1, "runner-a")) as number;
    const next = await claims.advance("tsk_2", 1, "runner-a", rev, "pushing");
    // the answer was lost: the runner tries again with the revision it held
    expect(await claims.advance("tsk_2", 1, "runner-a", rev, "pushing")).toBe(next);
    // but not a different state, nor another runner's
    expect(await claims.advance("tsk_2", 1, "runner-a", rev, "finished")).toBeUndefined();
    expect(await claims.advance("tsk_2", 1, "runner-b", rev, "pushing")).toBeUndefined();
  });

  it("lets one of two runners racing for the same attempt win", async () => {
    const claims = await openClaims();
    const results = await Promise.all([claims.claim("tsk_3", 1, "runner-a"), claims.claim("tsk_3", 1, "runner-b")]);
    expect(results.filter((r) => r !== undefined)).toHaveLength(1);
    const racing = await Promise.all([claims.claim("tsk_3", 2, "runner-a"), claims.claim("tsk_3", 2, "runner-b")]);
    expect(racing.filter((r) => r !== undefined)).toHaveLength(1);
  });
});
