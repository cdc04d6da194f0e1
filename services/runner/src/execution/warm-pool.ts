import type { AllocateResult } from "@codefleet/contracts";
import { errorMessage, isCodefleetError, ulid } from "@codefleet/contracts";
import type { Logger } from "@codefleet/platform/runtime";
import type { RepoPoolClient } from "@codefleet/repo-pool/client";
import { type Context, context, ROOT_CONTEXT } from "@opentelemetry/api";
import { setUpAgentGit } from "../workspace/agent-git.js";
import type { ExecutionDriver, RunHandle } from "./driver.js";
import type { EgressSpec } from "./egress.js";

/** What a warm container is made for: a repository and ref, an image, a network, limits. */
export type WarmClass = {
  repoUrl: string;
  ref?: string;
  image: string;
  network: "bridge" | "none";
  /** The egress of a container with a network (its proxy is made with it). */
  egress?: EgressSpec;
  runtime?: string;
  memoryMb: number;
  cpus: number;
};

export const warmClassKey = (c: WarmClass): string =>
  JSON.stringify([c.repoUrl, c.ref ?? "", c.image, c.network, c.egress ?? null, c.runtime ?? "", c.memoryMb, c.cpus]);

/** A container made for no task yet, bound to a slot its runner reserved, with the agent's git already in it. */
type WarmEntry = {
  reservation: string;
  key: string;
  slot: AllocateResult;
  run: RunHandle;
  readyAt: number;
  /** Given to a task: the pool no longer touches it (its lease and container are the task's). */
  taken?: boolean;
};

export type WarmPoolOptions = {
  driver: ExecutionDriver;
  repoPool: RepoPoolClient;
  runnerId: string;
  deployment?: string;
  pidsLimit: number;
  leaseTtlMs: number;
  heartbeatMs: number;
  /** Warm containers kept per class. */
  perClass: number;
  /** Warm containers kept in all (each holds a slot and a sleeping container: about 1-2 MB of memory). */
  max: number;
  /** A class nobody asked for in this long loses its warm containers. */
  idleMs: number;
  log: Logger;
};

export type WarmStart = { slot: AllocateResult; run: RunHandle };

/**
 * Created-and-started hardened containers, each bound to a slot reserved from repo-pool (a bind
 * mount is fixed at create), made ahead of the tasks that will use them. Classes are learned from
 * demand: a task of a class asks for it, the pool keeps `perClass` of it ready and refills in the
 * background after each take. A task takes one if its ref still resolves to the slot's commit
 * (repo-pool's adopt), so its first command is an exec into a running container.
 */
export class WarmPool {
  private readonly ready = new Map<string, WarmEntry[]>();
  private readonly filling = new Map<string, number>();
  private readonly demand = new Map<string, { cls: WarmClass; lastWanted: number; retryAfter: number }>();
  private readonly beat: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly o: WarmPoolOptions) {
    this.beat = setInterval(() => void this.tend(), o.heartbeatMs);
  }

  /** Containers ready and being made. */
  get size(): { ready: number; filling: number } {
    let ready = 0;
    for (const l of this.ready.values()) ready += l.length;
    let filling = 0;
    for (const n of this.filling.values()) filling += n;
    return { ready, filling };
  }

  /** The repositories it has a container ready for (what the runner's heartbeat tells for slot affinity). */
  warmRepos(): Set<string> {
    const repos = new Set<string>();
    for (const [key, entries] of this.ready) {
      const cls = this.demand.get(key)?.cls;
      if (cls && entries.some((e) => !e.taken)) repos.add(cls.repoUrl);
    }
    return repos;
  }

  /** A warm container of this class for the attempt, or undefined (none ready, or its slot is behind the ref). */
  async take(cls: WarmClass, owner: { taskId: string; attempt: number }, ctx?: Context): Promise<WarmStart | undefined> {
    const key = warmClassKey(cls);
    this.want(cls, key);
    const entry = this.ready.get(key)?.shift();
    if (!entry) {
      this.refill();
      return undefined;
    }
    entry.taken = true;
    try {
      const slot = await this.o.repoPool.adopt(
        {
          slotId: entry.slot.slotId,
          reservation: { taskId: entry.reservation, attempt: 1 },
          repoUrl: cls.repoUrl,
          ...(cls.ref ? { ref: cls.ref } : {}),
          ...owner,
          leaseTtlMs: this.o.leaseTtlMs,
        },
        ctx ? { ctx } : {},
      );
      return { slot, run: entry.run };
    } catch (err) {
      // slot_stale (the ref moved on), a lost lease, repo-pool away: this container is of no use
      this.o.log.info({ error: errorMessage(err) }, "warm container not usable: the task starts cold");
      void this.discard(entry);
      return undefined;
    } finally {
      this.refill();
    }
  }

  /** Gives one warm container and its slot back (the least recently made, of this repository first): repo-pool needs room. */
  async shrink(repoUrl?: string): Promise<boolean> {
    const all = [...this.ready.values()].flat().sort((a, b) => a.readyAt - b.readyAt);
    const victim = all.find((e) => repoUrl && e.slot.remoteUrl === repoUrl) ?? all[0];
    if (!victim) return false;
    victim.taken = true;
    this.ready.set(
      victim.key,
      (this.ready.get(victim.key) ?? []).filter((e) => e !== victim),
    );
    await this.discard(victim);
    return true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.beat);
    const all = [...this.ready.values()].flat().filter((e) => !e.taken);
    this.ready.clear();
    await Promise.all(all.map((e) => this.discard(e)));
  }

  private want(cls: WarmClass, key: string): void {
    const d = this.demand.get(key);
    this.demand.set(key, { cls, lastWanted: Date.now(), retryAfter: d?.retryAfter ?? 0 });
  }

  /** Starts making what is missing, most recently wanted classes first, within the pool's size. */
  private refill(): void {
    if (this.stopped) return;
    const wanted = [...this.demand.entries()].sort((a, b) => b[1].lastWanted - a[1].lastWanted);
    for (const [key, d] of wanted) {
      if (d.retryAfter > Date.now()) continue;
      while ((this.ready.get(key)?.length ?? 0) + (this.filling.get(key) ?? 0) < this.o.perClass) {
        const { ready, filling } = this.size;
        if (ready + filling >= this.o.max) return;
        this.filling.set(key, (this.filling.get(key) ?? 0) + 1);
        // its own trace: the task whose take started the refill has nothing to do with it
        void context.with(ROOT_CONTEXT, () => this.fill(key, d.cls)).finally(() => this.filling.set(key, (this.filling.get(key) ?? 1) - 1));
      }
    }
  }

  private async fill(key: string, cls: WarmClass): Promise<void> {
    const reservation = `warm-${ulid().toLowerCase()}`;
    let slot: AllocateResult | undefined;
    let run: RunHandle | undefined;
    try {
      slot = await this.o.repoPool.allocate({
        repoUrl: cls.repoUrl,
        ...(cls.ref ? { ref: cls.ref } : {}),
        taskId: reservation,
        attempt: 1,
        leaseTtlMs: this.o.leaseTtlMs,
        reservation: true,
      });
      run = await this.o.driver.createRun({
        taskId: reservation,
        attempt: 1,
        runnerId: this.o.runnerId,
        ...(this.o.deployment ? { deployment: this.o.deployment } : {}),
        image: cls.image,
        slot,
        memoryMb: cls.memoryMb,
        cpus: cls.cpus,
        pidsLimit: this.o.pidsLimit,
        network: cls.network,
        ...(cls.egress ? { egress: cls.egress } : {}),
        ...(cls.runtime ? { runtime: cls.runtime } : {}),
        env: {},
        labels: { "codefleet.warm": "true" },
      });
      const git = await setUpAgentGit(run, { baseSha: slot.commitSha, signal: AbortSignal.timeout(60_000) });
      if (!git.ok) this.o.log.info({ image: cls.image, detail: git.detail }, "no git for agents in this image");
      if (this.stopped) throw new Error("the pool is stopping");
      const entry: WarmEntry = { reservation, key, slot, run, readyAt: Date.now() };
      this.ready.set(key, [...(this.ready.get(key) ?? []), entry]);
    } catch (err) {
      const d = this.demand.get(key);
      // no room (the tasks' slots come first) or a broken class: try again later, not in a loop
      if (d) d.retryAfter = Date.now() + (isCodefleetError(err) && err.code === "no_capacity" ? 2000 : 30_000);
      this.o.log.debug({ error: errorMessage(err) }, "warm container not made");
      if (run || slot) await this.discard({ reservation, key, slot: slot as AllocateResult, run: run as RunHandle, readyAt: 0 });
    }
  }

  private async discard(e: WarmEntry): Promise<void> {
    await e.run?.remove().catch(() => undefined);
    if (e.slot)
      await this.o.repoPool.release({ slotId: e.slot.slotId, taskId: e.reservation, attempt: 1 }).catch((err) => {
        this.o.log.warn({ error: errorMessage(err) }, "warm slot not released (its lease will expire)");
      });
  }

  /** Renews the reservations' leases; drops containers whose lease was lost and classes nobody wants any more. */
  private async tend(): Promise<void> {
    const now = Date.now();
    for (const [key, entries] of this.ready) {
      const d = this.demand.get(key);
      const idle = !d || now - d.lastWanted > this.o.idleMs;
      for (const e of [...entries]) {
        // taken meanwhile (the loop awaits): the task's now, never the pool's to drop
        if (e.taken) continue;
        const drop = () => {
          if (e.taken) return;
          e.taken = true;
          this.ready.set(
            key,
            (this.ready.get(key) ?? []).filter((x) => x !== e),
          );
          return this.discard(e);
        };
        if (idle) {
          await drop();
          continue;
        }
        await this.o.repoPool
          .heartbeat({ slotId: e.slot.slotId, taskId: e.reservation, attempt: 1, leaseTtlMs: this.o.leaseTtlMs })
          .catch(async (err) => {
            // a lease lost by an entry a task took meanwhile is the task's adoption, not a loss
            if (isCodefleetError(err) && err.code === "lease_lost" && !e.taken) await drop();
          });
      }
      if (idle) this.demand.delete(key);
    }
  }
}
