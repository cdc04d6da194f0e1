import { randomUUID } from "node:crypto";
import type { AllocateResult } from "@codefleet/contracts";
import { errorMessage, isCodefleetError } from "@codefleet/contracts";
import type { Bus } from "@codefleet/platform/bus";
import type { Logger } from "@codefleet/platform/runtime";
import type { RepoPoolClient } from "@codefleet/repo-pool/client";
import type { Context } from "@opentelemetry/api";
import type { RunHandle } from "../execution/driver.js";
import type { AttemptEnd } from "../phases/phase.js";
import type { ClaimStore } from "./claims.js";
import { canceledInTurn, finishedInTurn, type Turn } from "./turns.js";

/** What happened to a delivery of task.submitted. */
export type AttemptOutcome = "ran" | "closed" | "skipped_finished" | "skipped_canceled" | "skipped_superseded";

/** The run.started of the attempt before (its trace is linked from a redelivered attempt); undefined when it cannot be read. */
export const previousRunStarted = (bus: Bus, taskId: string) =>
  bus
    .lastEvent(taskId, "run.started")
    .then((m) => m?.json<{ metadata?: { traceparent?: string } }>())
    .catch(() => undefined);

/**
 * Whether this delivery runs: not when the task already finished or its cancel was requested, and
 * only with the fencing claim for this attempt (a newer attempt's claim wins). Returns the claim's
 * revision (the fencing token) or why the delivery is skipped.
 */
export async function claimAttempt(
  bus: Bus,
  claims: ClaimStore,
  o: { taskId: string; attempt: number; turn: Turn; runnerId: string; durably: <T>(what: string, f: () => Promise<T>) => Promise<T> },
): Promise<{ revision: number } | Exclude<AttemptOutcome, "ran" | "closed">> {
  // read through an outage, not guessed: a finished task read as unfinished would run again.
  // Only this turn's end and cancel count: an earlier turn's are history.
  const checks = () =>
    o.durably("read the task's history", async () => {
      const [finished, cancel] = await Promise.all([
        bus.lastEvent(o.taskId, "run.finished"),
        bus.lastEvent(o.taskId, "task.cancel_requested"),
      ]);
      return [
        finishedInTurn(finished?.json<{ attempt: number }>().attempt, o.turn),
        cancel !== undefined && canceledInTurn(cancel.json<{ data: { turn?: number } }>().data.turn ?? 1, o.turn),
      ] as const;
    });
  // retried through a bus outage with one token: a claim whose answer was lost is recognized as ours
  const token = randomUUID();
  const claim = () => o.durably("claim the attempt", () => claims.claim(o.taskId, o.attempt, o.runnerId, token));
  // A first attempt claims while it checks (one round trip, not two): a claim taken for a delivery
  // then skipped is harmless. A redelivery checks first, so a finished task's claim never moves.
  let finished: unknown;
  let canceled: unknown;
  let revision: number | undefined;
  if (o.attempt === o.turn.firstAttempt) [[finished, canceled], revision] = await Promise.all([checks(), claim()]);
  else {
    [finished, canceled] = await checks();
    if (!finished && !canceled) revision = await claim();
  }
  if (finished) return "skipped_finished";
  if (canceled) return "skipped_canceled";
  return revision === undefined ? "skipped_superseded" : { revision };
}

/**
 * The life of one attempt around its phases: stopped from outside (cancel, the task's time limit, a
 * lost slot lease, a full disk), kept alive (JetStream's in-progress and the slot's lease), fenced
 * (the claim advanced with the revision it holds).
 */
export class AttemptLifecycle {
  readonly abort = new AbortController();
  private reason: AttemptEnd | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly deliveryBeat: NodeJS.Timeout;
  private slotBeat: NodeJS.Timeout | undefined;
  private readonly onCancel = () => this.stop({ status: "canceled", reason: "cancel requested", reasonCode: "canceled" });

  constructor(
    private readonly o: {
      taskId: string;
      attempt: number;
      runnerId: string;
      timeoutSeconds: number;
      heartbeatMs: number;
      leaseTtlMs: number;
      cancel: AbortSignal;
      /** Keeps the JetStream delivery in progress. */
      working: () => void;
      claims: ClaimStore;
      revision: number;
      repoPool: RepoPoolClient;
      log: Logger;
      traceContext: Context;
      durably: <T>(what: string, f: () => Promise<T>) => Promise<T>;
    },
  ) {
    o.cancel.addEventListener("abort", this.onCancel, { once: true });
    if (o.cancel.aborted) this.onCancel();
    this.timer = setTimeout(
      () => this.stop({ status: "timed_out", reason: `task exceeded its ${o.timeoutSeconds} s limit`, reasonCode: "task_timeout" }),
      o.timeoutSeconds * 1000,
    );
    this.deliveryBeat = setInterval(o.working, o.heartbeatMs);
  }

  /** Stops the attempt; the first reason wins. */
  stop(end: AttemptEnd): void {
    this.reason ??= end;
    this.abort.abort();
  }

  stoppedBy(): AttemptEnd | undefined {
    return this.reason;
  }

  /** The slot's lease, renewed until it is released; a lost lease or a full disk stops the attempt and its container. */
  keepSlot(slot: AllocateResult, run: () => RunHandle | undefined): void {
    const { o } = this;
    this.slotBeat = setInterval(() => {
      this.slotHeartbeat(slot)
        .then((hb) => {
          if (!hb.overQuota) return;
          this.stop({
            status: "failed",
            reason: `the workspace grew past its disk limit (${hb.diskBytes} bytes)`,
            reasonCode: "disk_limit",
          });
          void run()?.remove();
        })
        .catch((err) => {
          if (isCodefleetError(err) && err.code === "lease_lost") {
            // The slot may already be someone else's: stop writing into it at once.
            this.stop({ status: "failed", reason: "the workspace slot's lease was lost", reasonCode: "lease_lost" });
            void run()?.remove();
          }
          o.log.warn({ error: errorMessage(err) }, "slot heartbeat failed");
        });
    }, o.heartbeatMs);
  }

  private slotHeartbeat(slot: AllocateResult) {
    const { o } = this;
    return o.repoPool.heartbeat(
      { slotId: slot.slotId, taskId: o.taskId, attempt: o.attempt, leaseTtlMs: o.leaseTtlMs },
      { ctx: o.traceContext },
    );
  }

  /** Bytes in use when repo-pool says the workspace is over its limit (a failure in a full workspace is the disk's). */
  async workspaceFull(slot: AllocateResult): Promise<number | undefined> {
    const hb = await this.slotHeartbeat(slot).catch(() => undefined);
    return hb?.overQuota ? (hb.diskBytes ?? 0) : undefined;
  }

  /** Advances the fencing claim (retried through a bus outage); false when a newer attempt owns the task. */
  async advance(state: "pushing" | "finished"): Promise<boolean> {
    const { o } = this;
    const next = await o.durably(`advance the claim to ${state}`, () =>
      o.claims.advance(o.taskId, o.attempt, o.runnerId, o.revision, state),
    );
    if (next === undefined) return false;
    o.revision = next;
    return true;
  }

  /** The attempt's own work is over: no more JetStream in-progress, no more time limit (the slot's lease goes on until release). */
  settle(): void {
    clearTimeout(this.timer);
    clearInterval(this.deliveryBeat);
    this.o.cancel.removeEventListener("abort", this.onCancel);
  }

  /** The slot was given back. */
  released(): void {
    if (this.slotBeat) clearInterval(this.slotBeat);
  }
}
