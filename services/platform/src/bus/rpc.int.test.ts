import { CodefleetError } from "@codefleet/contracts";
import { testNamespace } from "@codefleet/test/support";
import type { NatsConnection } from "@nats-io/transport-node";
import { ROOT_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Bus } from "./bus.js";
import { connectNats } from "./connection.js";
import { RpcClient } from "./rpc.js";
import { traceIdOf } from "./trace-context.js";

let nc: NatsConnection;

beforeAll(async () => {
  nc = await connectNats({ servers: inject("natsUrl"), name: "bus-rpc-int-test" });
});
afterAll(async () => {
  await nc.drain();
});

describe("request/reply through the bus", () => {
  it("answers with the handler's result, or its error's code and retry meaning (never an unknown error's message)", async () => {
    const namespace = testNamespace();
    const bus = await Bus.create(nc, { namespace });
    const seen: unknown[] = [];
    const server = bus.serveRpc("svc", "echo", async (req) => {
      const body = req.body() as { say?: string };
      seen.push(body);
      if (body.say === "never") throw new CodefleetError("bad_input", "no such thing", { retry: { kind: "never" } });
      if (body.say === "later") throw new CodefleetError("busy", "try again", { retry: { kind: "after", delayMs: 10 } });
      if (body.say === "boom") throw new Error("secret internals");
      return { heard: body.say };
    });
    expect(await bus.request("svc", "echo", { say: "hi" }, { timeoutMs: 2000 })).toEqual({ ok: true, result: { heard: "hi" } });
    expect(await bus.request("svc", "echo", { say: "never" }, { timeoutMs: 2000 })).toEqual({
      ok: false,
      error: { code: "bad_input", message: "no such thing", retryable: false },
    });
    expect(await bus.request("svc", "echo", { say: "later" }, { timeoutMs: 2000 })).toEqual({
      ok: false,
      error: { code: "busy", message: "try again", retryable: true },
    });
    expect(await bus.request("svc", "echo", { say: "boom" }, { timeoutMs: 2000 })).toEqual({
      ok: false,
      error: { code: "internal_error", message: "internal error", retryable: true },
    });
    // a client of its own (what RepoPoolClient holds), on the same subjects
    const client = new RpcClient(nc, { namespace, service: "svc" });
    expect(await client.request("echo", { say: "again" }, { timeoutMs: 2000 })).toEqual({ ok: true, result: { heard: "again" } });
    // not JSON, or empty
    const raw = await nc.request(bus.topology.subjects.rpc("svc", "echo"), "{nope", { timeout: 2000 });
    expect(raw.json()).toEqual({ ok: false, error: { code: "invalid_json", message: "request is not JSON", retryable: false } });
    const empty = await nc.request(bus.topology.subjects.rpc("svc", "echo"), new Uint8Array(), { timeout: 2000 });
    expect(empty.json()).toEqual({ ok: true, result: {} });
    expect(seen).toHaveLength(6);
    server.unsubscribe();
  });

  it("carries the caller's trace context to the handler", async () => {
    const bus = await Bus.create(nc, { namespace: testNamespace() });
    let traceId: string | undefined;
    bus.serveRpc("svc", "trace", async (req) => {
      traceId = traceIdOf(req.traceContext);
      return {};
    });
    const parent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "b7ad6b7169203331",
      traceFlags: TraceFlags.SAMPLED,
    });
    await bus.request("svc", "trace", {}, { timeoutMs: 2000, ctx: parent });
    expect(traceId).toBe("0af7651916cd43dd8448eb211c80319c");
  });

  it("gives each request to one server of the queue group", async () => {
    const bus = await Bus.create(nc, { namespace: testNamespace() });
    const calls = { a: 0, b: 0 };
    bus.serveRpc("svc", "work", async () => ++calls.a);
    bus.serveRpc("svc", "work", async () => ++calls.b);
    for (let i = 0; i < 20; i++) expect((await bus.request("svc", "work", {}, { timeoutMs: 2000 })).ok).toBe(true);
    expect(calls.a + calls.b).toBe(20);
  });

  it("rejects when nobody answers", async () => {
    const bus = await Bus.create(nc, { namespace: testNamespace() });
    await expect(bus.request("nobody", "there", {}, { timeoutMs: 500 })).rejects.toThrow();
  });
});
