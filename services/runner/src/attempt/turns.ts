import type { CodefleetEventOf } from "@codefleet/contracts";
import type { QueuedWork } from "@codefleet/platform/bus";

/**
 * Turns: a task's submission is its turn 1; each follow-up (`task.follow_up_requested`) is a later
 * turn on the same branch. Attempts are numbered across the task: a turn's attempts go on from
 * the number its follow-up names (`firstAttempt`), one per delivery of its queue message. Pure.
 */

/** The turn an attempt belongs to, as the runner needs it. */
export type Turn = {
  /** 1: the submission; 2…: follow-ups. */
  number: number;
  /** The number of the turn's first attempt (1 for turn 1). */
  firstAttempt: number;
  /** The commit a follow-up starts from (the previous turn's push); absent: the task's base ref. */
  fromCommit?: string;
  /** The id of the event that asked for the turn (the submission or the follow-up): the attempt's events name it as their cause. */
  causationId: string;
};

/** What a queue message asks the runner to do: a turn of a task, with the spec that turn runs. */
export type TurnWork = { submitted: CodefleetEventOf<"task.submitted">; turn: Turn };

export const firstTurn = (submitted: CodefleetEventOf<"task.submitted">): Turn => ({
  number: 1,
  firstAttempt: 1,
  causationId: submitted.id,
});

/** The attempt number of a delivery of a turn's queue message (deliveries count from 1). */
export const attemptOf = (turn: Turn, delivery: number): number => turn.firstAttempt + delivery - 1;

/** Whether a task's latest `run.finished` (its attempt) ends this turn: it does when it is one of this turn's attempts. */
export const finishedInTurn = (finishedAttempt: number | undefined, turn: Turn): boolean =>
  finishedAttempt !== undefined && finishedAttempt >= turn.firstAttempt;

/** Whether a task's latest cancel (the turn it was asked for; absent: 1) stops this turn. */
export const canceledInTurn = (cancelTurn: number | undefined, turn: Turn): boolean =>
  cancelTurn !== undefined && cancelTurn >= turn.number;

/**
 * The prompt of a follow-up turn: the agent starts in a tree that already holds the earlier turns'
 * work (a new container: an agent's own session does not carry over), so it is told so, with the
 * original request for context.
 */
export function followUpPrompt(original: string, followUp: string, turn: number, continues = true): string {
  const earlier = turn > 2 ? ` (and ${turn - 2} follow-up${turn > 3 ? "s" : ""} since)` : "";
  return [
    continues
      ? `This is follow-up turn ${turn} of a task. The repository already contains the change made for the earlier request below${earlier}: continue from it, do not start over.`
      : `This is follow-up turn ${turn} of a task. The change made for the earlier request below${earlier} was not kept: the repository is as its base branch is now.`,
    "",
    "## Earlier request",
    "",
    original,
    "",
    "## This turn's request",
    "",
    followUp,
  ].join("\n");
}

/**
 * The work a queue message stands for: a submission is turn 1 as it is; a follow-up runs the
 * task's submission with the follow-up's prompt (and agent, when it names one) as a later turn.
 */
export function turnWork(message: QueuedWork, submission: CodefleetEventOf<"task.submitted"> | undefined): TurnWork | undefined {
  if (message.type === "task.submitted") return { submitted: message, turn: firstTurn(message) };
  if (!submission || submission.taskId !== message.taskId) return undefined;
  const d = message.data;
  const spec = submission.data.spec;
  return {
    submitted: {
      ...submission,
      data: {
        ...submission.data,
        spec: {
          ...spec,
          prompt: followUpPrompt(spec.prompt, d.prompt, d.turn, d.fromCommit !== undefined),
          ...(d.agent ? { agent: d.agent } : {}),
        },
      },
    },
    turn: {
      number: d.turn,
      firstAttempt: d.firstAttempt,
      ...(d.fromCommit ? { fromCommit: d.fromCommit } : {}),
      causationId: message.id,
    },
  };
}
