import { DEFAULT_TENANT, TENANT_NAME_PATTERN } from "@codefleet/contracts";
import { canAccessTenant, type Principal, submissionTenant } from "@codefleet/contracts/access";

/**
 * Which tenant an artifact belongs to: its task's, as the task's `task.submitted` event says
 * (read from the event stream; absent or unreadable: `default`, as for events from before tenancy).
 * Pure: the lookup on the bus is the caller's.
 */

const TENANT_RE = new RegExp(TENANT_NAME_PATTERN);

/** The tenant a raw `task.submitted` message names (leniently: an invalid submission still says whose it was). */
export function tenantOfSubmission(raw: unknown): string {
  const data = (raw as { data?: { tenant?: unknown } } | null)?.data;
  const tenant = data && typeof data === "object" ? data.tenant : undefined;
  return typeof tenant === "string" && TENANT_RE.test(tenant) ? tenant : DEFAULT_TENANT;
}

/**
 * The tenant an upload is recorded under, or undefined when the uploader may not write for the
 * task (another tenant's: answered 404). A task the event stream does not know (yet) is recorded
 * under the uploader's own tenant (`default` for a token of every tenant).
 */
export function uploadTenant(uploader: Principal, taskTenant: string | undefined): string | undefined {
  if (taskTenant === undefined) return submissionTenant(uploader);
  return canAccessTenant(uploader, taskTenant) ? taskTenant : undefined;
}
