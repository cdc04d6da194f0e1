import { CodefleetError, errorMessage } from "@codefleet/contracts";
import type { Bus } from "@codefleet/platform/bus";
import { tenantOfSubmission } from "../domain/tenancy.js";

/**
 * Finds a task's tenant in the event stream: the stored `task.submitted` on the task's subject
 * (the stream keeps events without an age limit). Found tenants are cached: a task never changes
 * tenant. Unknown tasks are not cached (the submission may not have arrived yet).
 */
export class TaskTenants {
  private readonly cache = new Map<string, string>();

  constructor(
    private readonly bus: Bus,
    private readonly maxCached = 10_000,
  ) {}

  async tenantOf(taskId: string): Promise<string | undefined> {
    const cached = this.cache.get(taskId);
    if (cached) return cached;
    // undefined when there is no such message; a NATS failure is a 503, never a guess
    const msg = await this.bus.lastEvent(taskId, "task.submitted").catch((err: unknown) => {
      throw new CodefleetError("unavailable", `cannot read the task's tenant from the event stream: ${errorMessage(err)}`, {
        cause: err,
      });
    });
    if (!msg) return undefined;
    let raw: unknown;
    try {
      raw = msg.json();
    } catch {
      raw = undefined;
    }
    const tenant = tenantOfSubmission(raw);
    if (this.cache.size >= this.maxCached) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(taskId, tenant);
    return tenant;
  }
}
