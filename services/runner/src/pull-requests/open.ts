import { StringDecoder } from "node:string_decoder";
import { type EventData, errorMessage, isCodefleetError } from "@codefleet/contracts";
import { trace } from "@opentelemetry/api";
import type { PhaseContext, PhaseReport } from "../phases/phase.js";
import type { SecretResolver } from "../secrets.js";
import { type DiffStat, DiffStatCounter, linksFor, pullRequestBody, pullRequestTitle } from "./body.js";
import { branchOfRef, openOrUpdate } from "./forge.js";
import { DEFAULT_FORGE_HTTP, DEFAULT_RETRY, PULL_REQUEST_FAILED, scrubbed } from "./http.js";
import { createForge } from "./providers.js";

/** The operator's settings (REGISTRY_PUBLIC_URL, JAEGER_URL, PULL_REQUEST_*: docs/operations.md). */
export type PullRequestSettings = {
  /** The registry as people reach it: the body links `<url>/tasks/<id>` and `<url>/v1/tasks/<id>`. */
  publicUrl?: string;
  /** Jaeger's UI: the body links `<url>/trace/<traceId>`. */
  jaegerUrl?: string;
  /** Per request to the provider. */
  timeoutMs?: number;
  /** Tries after the first, per call, of a retryable failure (timeout, 5xx, 429). */
  retries?: number;
  retryBaseMs?: number;
  maxRetryAfterMs?: number;
  maxResponseBytes?: number;
};

/** What the push phase needs of the attempt to open a pull request: set where the phase context is made. */
export type PullRequestServices = {
  /** The token's value: resolved for the task's tenant, used by the runner only (never in a container). */
  token(name: string): Promise<string>;
  /** Publishes `pull_request.opened` (retried through a platform hiccup like the attempt's other events). */
  opened(data: EventData<"pull_request.opened">): Promise<void>;
  settings: PullRequestSettings;
};

export function pullRequestServices(o: {
  secrets: Pick<SecretResolver, "resolve">;
  tenant: string;
  publish: (data: EventData<"pull_request.opened">) => Promise<unknown>;
  settings?: PullRequestSettings;
}): PullRequestServices {
  return {
    token: async (name) => (await o.secrets.resolve([name], o.tenant))[name] as string,
    opened: async (data) => {
      await o.publish(data);
    },
    settings: o.settings ?? {},
  };
}

/** The changes' size from the attempt's commit (the same diff as the changes.diff artifact); undefined when it cannot be read. */
async function diffStatOf(ctx: PhaseContext, sha: string): Promise<DiffStat | undefined> {
  const ws = ctx.record.head?.workspace;
  const base = ctx.record.rebase?.onto ?? ctx.record.baseSha;
  if (!ws || !base) return undefined;
  const counter = new DiffStatCounter();
  const utf8 = new StringDecoder("utf8");
  try {
    await ws.diff(base, sha, (chunk) => counter.push(utf8.write(chunk)));
    counter.push(utf8.end());
    return counter.end();
  } catch {
    return undefined;
  }
}

/**
 * After the push phase: with `spec.pullRequest`, opens the task's pull request, or updates the one
 * open for its branch, and publishes `pull_request.opened`. Runs when the branch was pushed now and
 * when an earlier attempt of the task had pushed it (a redelivery): the lookup comes first, so one
 * pull request per branch, however often the push phase runs.
 *
 * A failure does not undo the push: the attempt ends `failed` with `pull_request_failed` (and its
 * commit), the reason saying the branch is there. The token is the runner's alone: resolved here,
 * sent only to the provider's API, and masked in every line and message.
 */
export async function openPullRequestFor(ctx: PhaseContext, report: PhaseReport): Promise<PhaseReport> {
  const spec = ctx.spec.pullRequest;
  const services = ctx.pullRequests;
  const pushed = report.outcome === "succeeded" || report.facts?.alreadyPushed === true;
  const sha = ctx.record.pushedSha;
  if (!spec || !services || report.end || !pushed || !ctx.spec.push.enabled || !sha) return report;
  const branch = typeof report.facts?.branch === "string" ? report.facts.branch : ctx.spec.push.branch;
  const settings = services.settings;
  let secrets: string[] = [];
  const mask = (text: string) => scrubbed(ctx.masker.with(secrets).mask(text), secrets, 2000);
  try {
    const token = await services.token(spec.tokenSecret);
    secrets = [token];
    const forge = createForge(spec, token, {
      timeoutMs: settings.timeoutMs ?? DEFAULT_FORGE_HTTP.timeoutMs,
      maxResponseBytes: settings.maxResponseBytes ?? DEFAULT_FORGE_HTTP.maxResponseBytes,
      signal: ctx.signal,
      scrub: secrets,
    });
    const span = trace.getActiveSpan()?.spanContext();
    const traceId = span && trace.isSpanContextValid(span) ? span.traceId : undefined;
    const body = pullRequestBody({
      taskId: ctx.taskId,
      attempt: ctx.attempt,
      ...(ctx.record.agentResult?.summary ? { summary: ctx.masker.with(secrets).mask(ctx.record.agentResult.summary) } : {}),
      ...(ctx.spec.test && ctx.record.testOutcome
        ? {
            tests: {
              outcome: ctx.record.testOutcome.outcome,
              ...(ctx.record.testOutcome.counts ? { counts: ctx.record.testOutcome.counts } : {}),
            },
          }
        : {}),
      ...(await diffStatOf(ctx, sha).then((diff) => (diff ? { diff } : {}))),
      commitSha: sha,
      branch,
      links: linksFor(ctx.taskId, traceId, settings),
    });
    const base = spec.base ?? branchOfRef(ctx.spec.repo.ref);
    const pr = await openOrUpdate(
      forge,
      { head: branch, ...(base ? { base } : {}), title: pullRequestTitle(ctx.spec.title), body, draft: spec.draft === true },
      {
        retries: settings.retries ?? DEFAULT_RETRY.retries,
        baseDelayMs: settings.retryBaseMs ?? DEFAULT_RETRY.baseDelayMs,
        maxDelayMs: DEFAULT_RETRY.maxDelayMs,
        maxRetryAfterMs: settings.maxRetryAfterMs ?? DEFAULT_RETRY.maxRetryAfterMs,
        signal: ctx.signal,
        onRetry: (err, delayMs, attempt) =>
          ctx.log.system(mask(`pull request: ${err.message}; trying again in ${Math.round(delayMs / 100) / 10} s (retry ${attempt})`)),
      },
    );
    // the pull request exists whatever happens to its event (published with the attempt's retries)
    await services
      .opened({ url: pr.url, number: pr.number, provider: spec.provider, created: pr.created, head: branch, base: pr.base })
      .catch((err: unknown) => ctx.log.system(mask(`pull_request.opened not published: ${errorMessage(err)}`)));
    ctx.log.system(`pull request #${pr.number} ${pr.created ? "opened" : "updated"}: ${pr.url}`);
    return {
      ...report,
      detail: `${report.detail ?? "pushed"}; pull request #${pr.number} ${pr.created ? "opened" : "updated"}`,
      facts: { ...report.facts, pullRequestUrl: pr.url, pullRequestNumber: pr.number },
    };
  } catch (err) {
    const code = isCodefleetError(err) && err.code === "secret_missing" ? "secret_missing" : PULL_REQUEST_FAILED;
    const reason = mask(
      `pushed ${sha.slice(0, 12)} to ${branch}, but the ${spec.provider} pull request on ${spec.repository} was not opened: ${hint(err, spec.tokenSecret)}${errorMessage(err)}`,
    );
    return {
      outcome: "failed",
      detail: reason,
      ...(report.facts ? { facts: report.facts } : {}),
      end: { status: "failed", reasonCode: code, reason, commitSha: sha },
    };
  }
}

/** What a status usually means, before the provider's own words. */
function hint(err: unknown, tokenSecret: string): string {
  const status = isCodefleetError(err) ? (err.details?.status as number | undefined) : undefined;
  switch (status) {
    case 401:
      return `the provider refused the token (secret ${tokenSecret}): `;
    case 403:
      return `the token (secret ${tokenSecret}) may not open pull requests there: `;
    case 404:
      return "the repository was not found, or the token cannot see it: ";
    default:
      return "";
  }
}
