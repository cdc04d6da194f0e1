import { FormatRegistry } from "@sinclair/typebox";

// TypeBox rejects unknown string formats; register the few the catalogue uses.
const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/**
 * An RFC 3339 date-time with a real calendar date: `Date.parse` alone rolls February 30th over to
 * March 2nd, which Postgres then refuses to store.
 */
export function isIsoDateTime(value: string): boolean {
  const m = ISO_DATE_TIME.exec(value);
  if (!m || Number.isNaN(Date.parse(value))) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", isIsoDateTime);
