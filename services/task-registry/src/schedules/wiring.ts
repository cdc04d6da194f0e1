import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { quotaFor } from "@codefleet/contracts/access";
import type { Bus } from "@codefleet/platform/bus";
import type { Logger } from "@codefleet/platform/runtime";
import type { Meter } from "@opentelemetry/api";
import type { RegistryConfig } from "../config.js";
import type { Db } from "../store/database.js";
import { LeaderLease } from "./leader.js";
import { startScheduler } from "./scheduler.js";

/** The scheduler of one registry replica and its leader lease, started and stopped together. */
export async function startScheduling(deps: {
  config: RegistryConfig;
  bus: Bus;
  db: Db;
  log: Logger;
  meter: Meter;
  now?: () => Date;
}): Promise<{ isLeader(): boolean; tick(): Promise<number>; stop(): Promise<void> }> {
  const { config, bus, db, log } = deps;
  const lease = await LeaderLease.start({
    bus,
    bucket: bus.topology.buckets.registryLeases,
    id: `${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}`,
    leaseMs: config.SCHEDULER_LEASE_MS,
    log,
  });
  const scheduler = startScheduler({
    db,
    bus,
    log,
    meter: deps.meter,
    securityPolicy: config.securityPolicy,
    quota: (tenant) => quotaFor(config.access, tenant, config.defaultQuota),
    isLeader: () => lease.isLeader(),
    tickMs: config.SCHEDULER_TICK_MS,
    ...(deps.now ? { now: deps.now } : {}),
  });
  return {
    isLeader: () => lease.isLeader(),
    tick: () => scheduler.tick(),
    async stop() {
      await scheduler.stop();
      await lease.stop();
    },
  };
}
