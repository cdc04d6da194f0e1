import { randomUUID } from "node:crypto";
import { type CodefleetEventOf, createEvent, type ReasonCode, resolveTaskSpec } from "@codefleet/contracts";
import type { Context } from "@opentelemetry/api";
import { agentNeedsFor } from "../agents/registry.js";
import type { AttemptDeps } from "./attempt.js";
import type { AttemptOutcome } from "./lifecycle.js";
import { platformRetry } from "./platform-retry.js";
import { attemptOf, canceledInTurn, finishedInTurn, type TurnWork } from "./turns.js";

const PRODUCER = "runner";

/** How a task is closed without running it again. */
export type TaskClosing = { status: "failed" | "canceled"; reasonCode: ReasonCode; reason: string };

/**
 * Closes a task that will not run again, so that it never stays `running` (or `queued`) forever:
 * its deliveries are used up (runners that died, the bus away long enough to take them), or its
 * cancel was requested while the runner that held it died.
 *
 * Fenced like an attempt: the delivery claims the task with its own number first, so an earlier
 * attempt still running somewhere can no longer push or finish. The task's last started attempt
 * then gets its `run.finished`; a task no attempt ever started gets this delivery's `run.started`
 * first (the registry ends a task only through its current attempt). Platform calls ride out a
 * hiccup within `platformRetryMs`; a failure throws, and the delivery is offered again. Containers
 * the earlier attempts left behind are removed.
 */
export async function closeTask(
  deps: Pick<AttemptDeps, "bus" | "claims" | "agents" | "driver" | "log" | "settings">,
  input: { work: TurnWork; delivery: number; traceContext: Context },
  closing: TaskClosing,
): Promise<AttemptOutcome> {
  const { bus, claims, settings } = deps;
  const { submitted, turn } = input.work;
  const { taskId } = submitted;
  // the delivery's own attempt number: claims and containers go by it
  const self = attemptOf(turn, input.delivery);
  const log = deps.log.child({ taskId, delivery: input.delivery, turn: turn.number });
  const durably = <T>(what: string, f: () => Promise<T>) =>
    platformRetry(what, f, {
      withinMs: settings.platformRetryMs,
      onRetry: (w, error, delayMs) => log.warn({ error, retryInMs: delayMs }, `${w} failed; retrying`),
    });
  const lastFinished = (await durably("read run.finished", () => bus.lastEvent(taskId, "run.finished")))?.json<{ attempt: number }>();
  if (finishedInTurn(lastFinished?.attempt, turn)) return "skipped_finished";
  // a task whose cancel was requested ends canceled, whatever else stopped it
  const cancel = (await durably("read the cancel", () => bus.lastEvent(taskId, "task.cancel_requested")))?.json<
    CodefleetEventOf<"task.cancel_requested">
  >();
  if (closing.status !== "canceled" && cancel && canceledInTurn(cancel.data.turn ?? 1, turn))
    closing = { status: "canceled", reasonCode: "canceled", reason: `cancel requested; ${closing.reason}` };
  const token = randomUUID();
  const revision = await durably("claim the task", () => claims.claim(taskId, self, settings.runnerId, token));
  if (revision === undefined) return "skipped_superseded";
  if ((await durably("advance the claim", () => claims.advance(taskId, self, settings.runnerId, revision, "finished"))) === undefined)
    return "skipped_superseded";

  const started = (await durably("read run.started", () => bus.lastEvent(taskId, "run.started")))?.json() as
    | CodefleetEventOf<"run.started">
    | undefined;
  // an attempt of an earlier turn is not this turn's to close
  const lastStarted = started && started.attempt >= turn.firstAttempt ? started : undefined;
  // a task canceled before any attempt started was ended by its cancel: nothing to close
  if (!lastStarted && closing.status === "canceled") return "skipped_canceled";
  const common = { taskId, producer: PRODUCER, causationId: turn.causationId, correlationId: taskId };
  let attempt = lastStarted?.attempt;
  if (attempt === undefined) {
    attempt = self;
    const spec = resolveTaskSpec(submitted.data.spec, taskId);
    const started = createEvent("run.started", {
      ...common,
      attempt,
      data: {
        runnerId: settings.runnerId,
        agentKind: spec.agent.kind,
        image: agentNeedsFor(deps.agents, spec.agent, settings.images).image,
      },
    });
    await durably("publish run.started", () => bus.publish(started, { ctx: input.traceContext }));
  }
  const finished = createEvent("run.finished", {
    ...common,
    attempt,
    data: { status: closing.status, reasonCode: closing.reasonCode, reason: closing.reason, durationMs: 0 },
  });
  await durably("publish run.finished", () => bus.publish(finished, { ctx: input.traceContext }));
  log.warn({ attempt, status: closing.status, reasonCode: closing.reasonCode }, `task closed: ${closing.reason}`);
  // what the lost runners left (their slots' leases expire by themselves)
  const removed = await deps.driver.removeStale(taskId, self).catch(() => 0);
  if (removed) log.info({ removed }, "removed containers of earlier attempts");
  return "closed";
}
