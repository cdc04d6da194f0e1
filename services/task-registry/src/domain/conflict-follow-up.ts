import { type CodefleetEventOf, createEvent, MAX_TURNS } from "@codefleet/contracts";
import { followUpEventId, PRODUCER } from "./submission.js";
import type { TaskView } from "./task-state.js";

/** Who asks for a follow-up the registry makes of a rebase conflict (`spec.push.onConflict: follow-up`). */
export const CONFLICT_ACTOR = "codefleet:rebase-conflict";

/**
 * A turn that ended in `rebase_conflict` (its base branch moved under it and the change conflicts
 * with it), of a task whose spec says `push.onConflict: follow-up`: one follow-up turn that hands
 * the conflict to the agent, on the new base (the turn pushed nothing, so the next one starts from
 * the base's tip). Only for a turn that started from the base (a follow-up's conflict is with its
 * own branch, which a reviewer moved: that is theirs to settle), and once per task. Pure.
 */
export function conflictFollowUp(view: TaskView, now = new Date()): CodefleetEventOf<"task.follow_up_requested"> | undefined {
  if (view.spec?.push?.onConflict !== "follow-up" || view.status !== "failed" || view.reasonCode !== "rebase_conflict") return undefined;
  const turns = view.turns ?? [];
  const current = turns.find((t) => t.turn === (view.turn ?? 1));
  if (!current || current.fromCommit || turns.some((t) => t.requestedBy === CONFLICT_ACTOR)) return undefined;
  const turn = (view.turn ?? 1) + 1;
  if (turn > MAX_TURNS) return undefined;
  // the rebase phase finds a conflict when the task has tests (else push does, merging on objects)
  const files = view.phases.map((p) => p.facts?.conflictingFiles).find((f): f is string => typeof f === "string");
  const prompt = [
    `Your change for this task could not be taken onto the new tip of the base branch: it conflicts with what was pushed there meanwhile${files ? ` (in ${files})` : ""}.`,
    "You now start from that new tip. Make the change again so that it fits what is there now: keep what the base branch changed, and do what the task asks.",
  ].join(" ");
  return createEvent("task.follow_up_requested", {
    id: followUpEventId(view.id, turn),
    taskId: view.id,
    producer: PRODUCER,
    now,
    data: {
      turn,
      prompt,
      firstAttempt: view.attempt + 1,
      requestedBy: CONFLICT_ACTOR,
      tenant: view.tenant,
    },
  });
}
