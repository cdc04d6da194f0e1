import { CronExpressionParser } from "cron-parser";

/**
 * The one place the cron library is used (cron-parser): parsing and the fire-time arithmetic the
 * scheduler needs. Expressions have 5 fields (minute granularity) or 6 (a leading seconds field);
 * `@hourly`-style aliases work. Times are computed in an IANA time zone (default UTC), so
 * `0 9 * * *` in Europe/Berlin fires at 09:00 local time across daylight-saving changes.
 */

export type CronProblem = { code: "invalid_cron" | "invalid_timezone"; message: string };

export function timezoneProblem(timezone: string): CronProblem | undefined {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
    return undefined;
  } catch {
    return { code: "invalid_timezone", message: `'${timezone.slice(0, 100)}' is not an IANA time zone (e.g. Europe/Berlin, UTC)` };
  }
}

/** Why an expression (in a time zone) is not usable, or undefined when it is. */
export function cronProblem(cron: string, timezone = "UTC"): CronProblem | undefined {
  const tz = timezoneProblem(timezone);
  if (tz) return tz;
  const fields = cron.trim().split(/\s+/);
  if (!cron.trim().startsWith("@") && (fields.length < 5 || fields.length > 6))
    return { code: "invalid_cron", message: "a cron expression has 5 fields (minute hour day month weekday) or 6 (seconds first)" };
  try {
    const e = CronExpressionParser.parse(cron, { tz: timezone, strict: false });
    e.next(); // an expression that never fires (30 February) fails here
    return undefined;
  } catch (err) {
    return { code: "invalid_cron", message: `invalid cron expression: ${(err as Error).message.slice(0, 200)}` };
  }
}

/** The latest fire time at or before `now` (undefined when there is none). */
export function latestFireAtOrBefore(cron: string, timezone: string | undefined, now: Date): Date | undefined {
  // prev() is strictly before currentDate: one millisecond past now makes `now` itself count
  const e = CronExpressionParser.parse(cron, { tz: timezone ?? "UTC", currentDate: new Date(now.getTime() + 1) });
  try {
    return e.prev().toDate();
  } catch {
    return undefined;
  }
}

/** The first fire time strictly after `after` (undefined when there is none). */
export function nextFireAfter(cron: string, timezone: string | undefined, after: Date): Date | undefined {
  const e = CronExpressionParser.parse(cron, { tz: timezone ?? "UTC", currentDate: after });
  try {
    return e.next().toDate();
  } catch {
    return undefined;
  }
}
