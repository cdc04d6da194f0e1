import { type CodefleetEventOf, errorMessage, isCodefleetError, parseEvent, RunnerStatus, reasonOf } from "@codefleet/contracts";
import { Value } from "@sinclair/typebox/value";
import type { Bus, Listener, QueuedWork, Subscription } from "@codefleet/platform/bus";
import type { Logger } from "@codefleet/platform/runtime";
import { type AttemptDeps, runAttempt } from "./attempt.js";
import { AffinityBook } from "./affinity.js";
import { closeTask } from "./closing.js";
import { attemptOf, type TurnWork, turnWork } from "./turns.js";

/** Deliveries a task gets after its attempts: the first closes it; another stands by in case the runner closing it dies. */
export const CLOSING_DELIVERIES = 2;

export type WorkerOptions = {
  concurrency: number;
  /** Attempts per task before the submission is dead-lettered. */
  maxAttempts: number;
  /** The JetStream ack deadline; heartbeats (working()) keep running attempts alive. */
  ackWaitMs: number;
  /** How often the tenants' queues are re-read (new tasks are seen at once; this catches redeliveries). */
  laneRefreshMs?: number;
  /** Slot affinity (./affinity.ts): leave a task to a runner that has it warm, for at most `waitMs`. */
  affinity?: { waitMs: number; runnerId: string; warmRepos: () => ReadonlySet<string> };
};

/**
 * Takes admitted tasks from the tenants' run queues (every runner replica pulls from them, each up
 * to its concurrency, the tenants taking turns), runs attempts, and stops running attempts whose cancel is requested.
 * A runner that dies stops heartbeating: the message is redelivered after the ack deadline with
 * the delivery count as the next attempt number. A delivery past `maxAttempts` closes the task as
 * failed (`attempts_exhausted`) instead of running it: no task is left running with nobody on it.
 */
export class Worker {
  private readonly running = new Map<string, { ctl: AbortController; attempt: number }>();
  private sub: Subscription | undefined;
  private cancelSub: Listener | undefined;
  private readonly affinityListeners: Listener[] = [];

  constructor(
    private readonly deps: AttemptDeps,
    private readonly opts: WorkerOptions,
    private readonly log: Logger,
  ) {}

  get active(): number {
    return this.running.size;
  }

  async start(): Promise<void> {
    const bus: Bus = this.deps.bus;
    // invalid events are not ours to judge (the registry records them): the watch ignores them
    this.cancelSub = bus.watchEvents("task.cancel_requested", (e) => {
      const running = this.running.get(e.taskId);
      if (running) {
        this.log.info({ taskId: e.taskId }, "cancel requested: stopping the attempt");
        running.ctl.abort();
      }
    });
    const { topology } = bus;
    const affinity = this.opts.affinity;
    const book = affinity ? new AffinityBook({ runnerId: affinity.runnerId, waitMs: affinity.waitMs }) : undefined;
    if (book) {
      // what the others have warm and free, and which queued tasks a runner has started
      this.affinityListeners.push(
        bus.listen(topology.subjects.allRunnerStatus, (value) => {
          const status = Value.Check(RunnerStatus, value) ? value : undefined;
          if (status) book.heard(status);
        }),
        bus.watchEvents("run.started", (e) => book.started(e.taskId)),
      );
    }
    // a lane per tenant, taken in turns: one tenant's backlog does not hold back another's tasks
    this.sub = await bus.consumeLanes({
      stream: topology.streams.queue.name,
      lanesSubject: topology.subjects.allQueues,
      laneOf: (subject) => topology.subjects.queueTenant(subject),
      lane: (tenant) => topology.consumers.runnerQueue(tenant),
      decode: (data) => parseEvent(data),
      description: "runner: a tenant's queue of admitted tasks",
      concurrency: this.opts.concurrency,
      ackWaitMs: this.opts.ackWaitMs,
      // past the attempts, deliveries that close the task (one more if a runner dies closing it)
      maxDeliver: this.opts.maxAttempts + CLOSING_DELIVERIES,
      // Many runners × their concurrency may hold tasks at once.
      maxAckPending: 10_000,
      retryDelayMs: (n) => Math.min(5000 * n, 60_000),
      spanName: (e) => `run ${e.type}`,
      ...(this.opts.laneRefreshMs ? { refreshMs: this.opts.laneRefreshMs } : {}),
      ...(book && affinity
        ? {
            onNotice: (lane: string, data: Uint8Array) => {
              const queued = queuedTaskOf(data);
              if (queued) book.queued(lane, queued);
            },
            holdLane: (lane: string) => book.hold(lane, affinity.warmRepos()),
          }
        : {}),
      handle: async (event, ctx) => {
        if (event.type !== "task.submitted" && event.type !== "task.follow_up_requested") return;
        const work = await this.workOf(event as QueuedWork);
        if (!work) return;
        const { submitted, turn } = work;
        const delivery = ctx.deliveryCount;
        const attempt = attemptOf(turn, delivery);
        const closing = { work, delivery, traceContext: ctx.traceContext };
        // the attempts are used up (runners lost, or the bus away longer than the ack deadline): the task is closed, not left running
        if (delivery > this.opts.maxAttempts) {
          const outcome = await closeTask(this.deps, closing, {
            status: "failed",
            reasonCode: "attempts_exhausted",
            reason: `its ${this.opts.maxAttempts} attempts ended without a result (a runner lost, or the platform away): not tried again`,
          });
          this.log.warn({ taskId: submitted.taskId, turn: turn.number, delivery, outcome }, "delivery past the attempts");
          return;
        }
        const ctl = new AbortController();
        this.running.set(submitted.taskId, { ctl, attempt });
        try {
          let outcome = await runAttempt(this.deps, {
            event: submitted,
            turn,
            attempt,
            working: ctx.working,
            cancel: ctl.signal,
            traceContext: ctx.traceContext,
          });
          // canceled while the runner that held it was lost: that attempt never said so
          if (outcome === "skipped_canceled" && delivery > 1)
            outcome = await closeTask(this.deps, closing, {
              status: "canceled",
              reasonCode: "canceled",
              reason: "cancel requested; the runner that held the task was lost",
            });
          if (outcome !== "ran") this.log.info({ taskId: submitted.taskId, attempt, outcome }, "delivery skipped");
        } catch (err) {
          // an error that says it never succeeds would dead-letter the delivery and leave the task open: close it
          if (isCodefleetError(err) && err.retry.kind === "never") {
            this.log.error({ taskId: submitted.taskId, error: errorMessage(err) }, "attempt refused; the task is closed");
            await closeTask(this.deps, closing, { status: "failed", ...reasonOf(err, this.deps.masker.mask(err.message)) });
            return;
          }
          this.log.error({ taskId: submitted.taskId, error: errorMessage(err) }, "attempt crashed; it will be redelivered");
          throw err;
        } finally {
          this.running.delete(submitted.taskId);
        }
      },
    });
  }

  /**
   * The turn a queue message asks for. A follow-up runs its task's submission (read from the task's
   * history, through an outage) with its own prompt; one whose submission cannot be found is
   * dropped with an error (the registry admits follow-ups only for tasks it has).
   */
  private async workOf(message: QueuedWork): Promise<TurnWork | undefined> {
    if (message.type === "task.submitted") return turnWork(message, undefined);
    const stored = await this.deps.bus.lastEvent(message.taskId, "task.submitted");
    const submission = stored ? (parseEvent(stored.json()) as CodefleetEventOf<"task.submitted">) : undefined;
    const work = turnWork(message, submission);
    if (!work)
      this.log.error(
        { taskId: message.taskId, turn: message.data.turn },
        "follow-up for a task whose submission is not on the bus: dropped",
      );
    return work;
  }

  /** Stops taking work; running attempts finish (SIGTERM) unless `abort` (they are then redelivered elsewhere). */
  async stop(opts: { abort?: boolean } = {}): Promise<void> {
    if (opts.abort) for (const r of this.running.values()) r.ctl.abort();
    await this.sub?.stop();
    this.cancelSub?.unsubscribe();
    for (const l of this.affinityListeners) l.unsubscribe();
  }
}

/** A queue notice's task and repository (a follow-up names none: the runner finds it out when it runs). */
function queuedTaskOf(data: Uint8Array): { taskId: string; repoUrl?: string } | undefined {
  try {
    const e = JSON.parse(new TextDecoder().decode(data)) as { taskId?: unknown; type?: unknown; data?: { spec?: { repo?: { url?: unknown } } } };
    if (typeof e.taskId !== "string") return undefined;
    const url = e.type === "task.submitted" ? e.data?.spec?.repo?.url : undefined;
    return { taskId: e.taskId, ...(typeof url === "string" ? { repoUrl: url } : {}) };
  } catch {
    return undefined;
  }
}
