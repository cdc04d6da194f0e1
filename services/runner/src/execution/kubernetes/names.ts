import { createHash } from "node:crypto";
import { LABELS } from "../driver.js";
import { isLabelValue } from "./settings.js";

/** The one container of a task pod. */
export const AGENT_CONTAINER = "agent";

/** Labels codefleet puts on task pods beside LABELS (driver.ts). */
export const K8S_LABELS = {
  /** The pod's own name: what its NetworkPolicy selects (task and attempt labels change when a warm pod is adopted). */
  pod: "codefleet.pod",
  component: "app.kubernetes.io/component",
  managedBy: "app.kubernetes.io/managed-by",
} as const;

/** Exact values, where a label could only hold a digest of them. */
export const ANNOTATIONS = {
  taskId: "codefleet.task-id",
  attempt: "codefleet.attempt",
  runnerId: "codefleet.runner-id",
  slotId: "codefleet.slot-id",
  pidsLimit: "codefleet.pids-limit",
  /** A warm pod's reservation, kept when an attempt adopts it. */
  reservation: "codefleet.reservation",
} as const;

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * A label value for any string: itself when Kubernetes takes it as a label value (63 characters,
 * alphanumerics, `-_.`), else a digest. Deterministic, so a selector finds what a label marked;
 * the exact value is in an annotation, which the driver checks before it removes anything.
 */
export function labelValue(value: string): string {
  return isLabelValue(value) ? value : `x-${sha256(value).slice(0, 40)}`;
}

/**
 * Name of an attempt's pod and its NetworkPolicy: a DNS label (63 characters, lowercase
 * alphanumerics and `-`), readable, and unique per (task id, attempt) through a digest of both.
 */
export function podName(taskId: string, attempt: number, candidate?: number): string {
  const slug =
    taskId
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+/, "")
      .slice(0, 36)
      .replace(/-+$/, "") || "task";
  // a best-of-N candidate (2..N) is a pod of its own
  const which = candidate ? `${attempt}c${candidate}` : `${attempt}`;
  return `cf-${slug}-${which}-${sha256(candidate ? `${taskId}\0${which}` : `${taskId}\0${attempt}`).slice(0, 8)}`.slice(0, 63);
}

/** `k=v,k=v` of a label map, for list calls. */
export function selector(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

export function ownerLabels(taskId: string, attempt: number): Record<string, string> {
  return { [LABELS.taskId]: labelValue(taskId), [LABELS.attempt]: String(attempt) };
}
