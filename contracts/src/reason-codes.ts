import { isCodefleetError } from "./errors.js";

/**
 * Why an attempt did not succeed: the `reasonCode` of `run.finished`. docs/events.md lists the same
 * codes, one a line (reason-codes.unit.test.ts keeps the two equal). Add a code here and there
 * together; never rename one (stored events carry them).
 */
export const REASON_CODES = [
  // a phase stopped the attempt
  "setup_failed",
  "setup_timeout",
  "test_failed",
  "test_timeout",
  "agent_failed",
  "agent_stalled",
  "oom_killed",
  "task_timeout",
  "canceled",
  "push_rejected",
  "pull_request_failed",
  "secret_in_diff",
  "rebase_conflict",
  "disk_limit",
  "budget_exceeded",
  // the attempt itself
  "lease_lost",
  "no_capacity",
  "attempts_exhausted",
  "internal_error",
  // the task, checked against the operator's policy before anything runs
  "invalid_env_name",
  "invalid_label_key",
  "repo_url_credentials_refused",
  "repo_url_invalid",
  "repo_url_scheme_refused",
  "repo_url_file_refused",
  "repo_url_host_refused",
  "secret_endpoint_not_allowed",
  "invalid_base_url",
  "secret_not_allowed_for_tenant",
  "invalid_pull_request",
  "network_not_allowed",
  "runtime_unavailable",
  "secret_missing",
  // the workspace and its repository (repo-pool's codes, passed on)
  "ref_not_found",
  "repo_not_found",
  "remote_unreachable",
  "git_auth_failed",
  "workspace_unreadable",
  "invalid_commit",
  // containers
  "image_missing",
  "docker_unreachable",
  "no_git",
  // agents and the LLM gateway
  "agent_unreachable",
  "agent_output_too_large",
  "opencode_error",
  "llm_error",
  "gateway_closed",
  "gateway_session_exists",
  "gateway_session_id_invalid",
  "gateway_upstream_invalid",
  "gateway_upstream_unreachable",
  // the task container's egress and the execution backends
  "egress_unready",
  "kubernetes_api",
  "pod_vanished",
] as const;

export type ReasonCode = (typeof REASON_CODES)[number];

const KNOWN: ReadonlySet<string> = new Set(REASON_CODES);
export const isReasonCode = (code: string): code is ReasonCode => KNOWN.has(code);

/**
 * The reason code an error ends an attempt with: its own code when it is one of the catalogue's,
 * else `internal_error` (with the error's own code kept in the reason, for whoever debugs it).
 */
export function reasonOf(err: unknown, message: string): { reasonCode: ReasonCode; reason: string } {
  const code = isCodefleetError(err) ? err.code : undefined;
  if (code && isReasonCode(code)) return { reasonCode: code, reason: message };
  return { reasonCode: "internal_error", reason: code ? `${message} (${code})` : message };
}
