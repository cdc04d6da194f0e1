import { randomBytes, randomUUID } from "node:crypto";

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID: 48-bit millisecond time + 80 random bits, Crockford base32, sortable by creation time. */
export function ulid(now: number = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = randomBytes(16);
  let rand = "";
  for (let i = 0; i < 16; i++) rand += CROCKFORD[(bytes[i] ?? 0) % 32];
  return time + rand;
}

/** Task ids are subject-token safe (no dots, no wildcards) and sort by submission time. */
export function newTaskId(now?: number): string {
  return `tsk_${ulid(now)}`;
}

export function newEventId(): string {
  return randomUUID();
}

/** Pattern every task id must match: it is used as a NATS subject token and a path segment. */
export const TASK_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$";
const TASK_ID_RE = new RegExp(TASK_ID_PATTERN);

export function isValidTaskId(id: string): boolean {
  return TASK_ID_RE.test(id);
}
