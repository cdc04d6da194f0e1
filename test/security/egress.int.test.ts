import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { slotLayout } from "@codefleet/contracts";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { DockerDriver } from "../../services/runner/src/execution/docker-driver.js";
import type { RunHandle, SlotMount } from "../../services/runner/src/execution/driver.js";
import type { EgressSpec } from "../../services/runner/src/execution/egress.js";

/**
 * Egress of task containers (docs/security.md, "Egress"), tested where it is enforced: real
 * containers on their internal networks behind real squid proxies. From inside a task container,
 * under each policy, the test probes the LLM gateway, the host's ports (a service like the
 * platform's, NATS), the metadata address, and two hosts "on the internet" (a network namespace
 * with TEST-NET-2 addresses, routed by this host like any outside address). A control container
 * on Docker's default bridge reaches the host's service: what fails below fails by the policy.
 */

const IMAGE = process.env.CODEFLEET_AGENT_IMAGE ?? "codefleet/agent:latest";
const PROXY_IMAGE = process.env.CODEFLEET_EGRESS_PROXY_IMAGE ?? "codefleet/egress-proxy:latest";
const NS = `cfeg${process.pid % 100000}`;
const VETH = `cfe${process.pid % 100000}`;
const ALLOWED = "198.51.100.10";
const OTHER = "198.51.100.11";

type Probe = { name: string; url: string; viaProxy?: boolean };
type Outcome = Record<string, string>;

/** Runs in the task container (node is in the agent image): each probe's `ok <status> <body>` or `err <code>`. */
const PROBE_SCRIPT = `
const http = require("node:http");
const probes = JSON.parse(process.argv[1]);
const one = (p) => new Promise((resolve) => {
  const u = new URL(p.url);
  const opts = p.viaProxy
    ? { host: "egress", port: 3128, path: p.url, headers: { host: u.host } }
    : { host: u.hostname, port: u.port || 80, path: u.pathname };
  const req = http.get({ ...opts, timeout: 4000 }, (res) => {
    let body = "";
    res.on("data", (c) => (body += c));
    res.on("end", () => resolve("ok " + res.statusCode + " " + body.slice(0, 40).trim()));
  });
  req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
  req.on("error", (e) => resolve("err " + (e.code || e.message)));
});
Promise.all(probes.map(one)).then((r) => console.log(JSON.stringify(Object.fromEntries(probes.map((p, i) => [p.name, r[i]])))));
`;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

describe("task container egress", () => {
  const docker = new Docker();
  let driver: DockerDriver;
  let slot: SlotMount;
  let slotDir: string;
  let hostService: Server;
  let gateway: Server;
  let outside: ChildProcess | undefined;
  let hostPort = 0;
  let gatewayPort = 0;
  let natsPort = 0;
  const runs: RunHandle[] = [];

  const listen = (body: string) =>
    new Promise<Server>((resolve) => {
      const s = createServer((_req, res) => res.end(body));
      s.listen(0, "0.0.0.0", () => resolve(s));
    });

  beforeAll(async () => {
    hostService = await listen("host-service");
    gateway = await listen("gateway-ok");
    hostPort = (hostService.address() as AddressInfo).port;
    gatewayPort = (gateway.address() as AddressInfo).port;
    natsPort = Number(new URL(inject("natsUrl")).port);
    // "the internet": a namespace this host routes to, as it routes any outside address
    sh("ip", ["netns", "add", NS]);
    sh("ip", ["link", "add", VETH, "type", "veth", "peer", "name", `${VETH}p`]);
    sh("ip", ["link", "set", `${VETH}p`, "netns", NS]);
    sh("ip", ["addr", "add", "198.51.100.1/24", "dev", VETH]);
    sh("ip", ["link", "set", VETH, "up"]);
    for (const a of [ALLOWED, OTHER]) sh("ip", ["netns", "exec", NS, "ip", "addr", "add", `${a}/24`, "dev", `${VETH}p`]);
    sh("ip", ["netns", "exec", NS, "ip", "link", "set", `${VETH}p`, "up"]);
    sh("ip", ["netns", "exec", NS, "ip", "route", "add", "default", "via", "198.51.100.1"]);
    outside = spawn(
      "ip",
      [
        "netns",
        "exec",
        NS,
        process.execPath,
        "-e",
        "require('http').createServer((q,r)=>r.end('outside '+q.socket.localAddress)).listen(80,'0.0.0.0',()=>console.log('up'))",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await new Promise<void>((resolve, reject) => {
      outside?.stdout?.once("data", () => resolve());
      outside?.once("exit", (code) => reject(new Error(`the outside server exited (${code})`)));
    });

    slotDir = await mkdtemp(join(tmpdir(), "codefleet-egress-"));
    const layout = slotLayout(slotDir);
    await mkdir(layout.tree, { recursive: true });
    await mkdir(join(layout.gitDir, "objects"), { recursive: true });
    await mkdir(layout.indexDir, { recursive: true });
    await writeFile(layout.index, "");
    slot = { slotId: "slot-egress", path: slotDir, hostPath: slotDir };
    driver = new DockerDriver({
      egress: {
        image: PROXY_IMAGE,
        network: `codefleet-egress-test-${process.pid}`,
        extraHosts: ["host.docker.internal:host-gateway", `outside.test:${ALLOWED}`, `other.test:${OTHER}`],
      },
    });
  }, 120_000);

  afterAll(async () => {
    for (const r of runs) await r.remove().catch(() => undefined);
    await docker
      .getNetwork(`codefleet-egress-test-${process.pid}`)
      .remove()
      .catch(() => undefined);
    outside?.kill();
    try {
      sh("ip", ["link", "del", VETH]);
    } catch {}
    try {
      sh("ip", ["netns", "del", NS]);
    } catch {}
    await new Promise((r) => hostService?.close(r));
    await new Promise((r) => gateway?.close(r));
    if (slotDir) await rm(slotDir, { recursive: true, force: true });
  });

  const hostProbes = (): Probe[] => [
    { name: "hostDocker0", url: `http://172.17.0.1:${hostPort}/` },
    { name: "natsOnHost", url: `http://172.17.0.1:${natsPort}/` },
    { name: "metadata", url: "http://169.254.169.254/latest/meta-data/" },
    { name: "outsideDirect", url: `http://${ALLOWED}/` },
    { name: "proxiedHost", url: `http://172.17.0.1:${hostPort}/`, viaProxy: true },
    { name: "proxiedHostName", url: `http://host.docker.internal:${hostPort}/`, viaProxy: true },
    { name: "proxiedMetadata", url: "http://169.254.169.254/latest/meta-data/", viaProxy: true },
    { name: "proxiedNats", url: `http://172.17.0.1:${natsPort}/`, viaProxy: true },
    { name: "proxiedGatewayPortOnHost", url: `http://172.17.0.1:${gatewayPort}/`, viaProxy: true },
    { name: "proxiedAllowed", url: `http://${ALLOWED}/`, viaProxy: true },
    { name: "proxiedAllowedName", url: "http://outside.test/", viaProxy: true },
    { name: "proxiedOther", url: `http://${OTHER}/`, viaProxy: true },
    { name: "proxiedOtherName", url: "http://other.test/", viaProxy: true },
    { name: "proxiedOddPort", url: `http://${ALLOWED}:8080/`, viaProxy: true },
    { name: "gateway", url: "http://egress:8089/" },
  ];

  async function probeFrom(egress: EgressSpec | undefined, probes: Probe[]): Promise<Outcome> {
    const run = await driver.createRun({
      taskId: `tsk_egress_${egress?.mode ?? "none"}_${runs.length}`,
      attempt: 1,
      runnerId: "egress-test",
      image: IMAGE,
      slot,
      memoryMb: 256,
      cpus: 0.5,
      pidsLimit: 64,
      network: egress ? "bridge" : "none",
      ...(egress ? { egress } : {}),
      env: {},
    });
    runs.push(run);
    if (egress) await run.address(); // waits until the proxy answers
    let out = "";
    const r = await run.exec(["node", "-e", PROBE_SCRIPT, JSON.stringify(probes)], {
      timeoutMs: 60_000,
      onOutput: (_s, c) => {
        out += c.toString();
      },
    });
    expect(r.exitCode, out).toBe(0);
    return JSON.parse(out.trim().split("\n").pop() as string) as Outcome;
  }

  const blocked = (v: string | undefined) => v !== undefined && (v.startsWith("err ") || v.startsWith("ok 403"));

  it("control: a container on Docker's default bridge reaches the host's service (so what fails below fails by policy)", async () => {
    const c = await docker.createContainer({
      Image: IMAGE,
      Cmd: [
        "node",
        "-e",
        `require('http').get('http://172.17.0.1:${hostPort}/',r=>{let b='';r.on('data',c=>b+=c);r.on('end',()=>console.log(b))})`,
      ],
      HostConfig: { NetworkMode: "bridge", AutoRemove: false },
    });
    try {
      await c.start();
      await c.wait();
      const logs = (await c.logs({ stdout: true, stderr: true })).toString();
      expect(logs).toContain("host-service");
    } finally {
      await c.remove({ force: true });
    }
  });

  it("none: no network at all", async () => {
    const o = await probeFrom(undefined, hostProbes());
    for (const [name, v] of Object.entries(o)) expect(v, name).toMatch(/^err /);
  });

  it("llm: only the LLM gateway; the host, the platform, the metadata address and the outside are not reachable", async () => {
    const o = await probeFrom(
      { mode: "llm", allow: [], agentPorts: [], llmUpstream: { host: "host.docker.internal", port: gatewayPort } },
      hostProbes(),
    );
    expect(o.gateway).toBe("ok 200 gateway-ok");
    for (const [name, v] of Object.entries(o)) if (name !== "gateway") expect(blocked(v), `${name}: ${v}`).toBe(true);
  });

  it("allow: the allow-listed hosts (by address and by name) over the proxy, nothing else", async () => {
    const o = await probeFrom(
      {
        mode: "allow",
        allow: [ALLOWED, "outside.test"],
        agentPorts: [],
        llmUpstream: { host: "host.docker.internal", port: gatewayPort },
      },
      hostProbes(),
    );
    expect(o.gateway).toBe("ok 200 gateway-ok");
    expect(o.proxiedAllowed).toBe(`ok 200 outside ${ALLOWED}`);
    expect(o.proxiedAllowedName).toBe(`ok 200 outside ${ALLOWED}`);
    for (const name of Object.keys(o).filter((n) => !["gateway", "proxiedAllowed", "proxiedAllowedName"].includes(n)))
      expect(blocked(o[name]), `${name}: ${o[name]}`).toBe(true);
  });

  it("open: any public address over the proxy, still never the host, the platform or link-local", async () => {
    const o = await probeFrom({ mode: "open", allow: [], agentPorts: [] }, hostProbes());
    expect(o.proxiedAllowed).toBe(`ok 200 outside ${ALLOWED}`);
    expect(o.proxiedOther).toBe(`ok 200 outside ${OTHER}`);
    expect(o.proxiedOtherName).toBe(`ok 200 outside ${OTHER}`);
    // no LLM upstream was given: the gateway port is not there
    for (const name of [
      "hostDocker0",
      "natsOnHost",
      "metadata",
      "outsideDirect",
      "proxiedHost",
      "proxiedHostName",
      "proxiedMetadata",
      "proxiedNats",
      "proxiedGatewayPortOnHost",
      "proxiedOddPort",
      "gateway",
    ])
      expect(blocked(o[name]), `${name}: ${o[name]}`).toBe(true);
  });

  it("the runner reaches a server in the task container through the proxy, and only on the agent's port", async () => {
    const run = await driver.createRun({
      taskId: `tsk_egress_server_${runs.length}`,
      attempt: 1,
      runnerId: "egress-test",
      image: IMAGE,
      slot,
      memoryMb: 256,
      cpus: 0.5,
      pidsLimit: 64,
      network: "bridge",
      egress: { mode: "llm", allow: [], agentPorts: [4096] },
      env: {},
      command: ["node", "-e", "require('http').createServer((q,r)=>r.end('agent-server')).listen(4096)"],
    });
    runs.push(run);
    const address = await run.address();
    expect(address).toBeTruthy();
    // the server may still be starting: the proxy answers 502/503 until it listens
    let body = "";
    for (let i = 0; i < 100 && body !== "agent-server"; i++) {
      body = await fetch(`http://${address}:4096/`).then(
        (r) => r.text(),
        () => "",
      );
      if (body !== "agent-server") await new Promise((r) => setTimeout(r, 100));
    }
    expect(body).toBe("agent-server");
    // the proxy's forward port does not let the runner side into the internal network either
    const forward = await fetch(`http://${address}:3128/`, { headers: { host: "agent:4096" } }).then((r) => r.status);
    expect(forward).not.toBe(200);
  });

  it("removes the proxy and the internal network with the run", async () => {
    const run = await driver.createRun({
      taskId: `tsk_egress_rm_${runs.length}`,
      attempt: 1,
      runnerId: "egress-test",
      image: IMAGE,
      slot,
      memoryMb: 256,
      cpus: 0.5,
      pidsLimit: 64,
      network: "bridge",
      egress: { mode: "llm", allow: [], agentPorts: [] },
      env: {},
    });
    const name = `codefleet-tsk_egress_rm_${runs.length}-1`;
    expect((await docker.listContainers({ all: true, filters: { name: [name] } })).length).toBe(2);
    await run.remove();
    expect((await docker.listContainers({ all: true, filters: { name: [name] } })).length).toBe(0);
    expect((await docker.listNetworks({ filters: { name: [name] } })).filter((n) => n.Name === name).length).toBe(0);
  });
});
