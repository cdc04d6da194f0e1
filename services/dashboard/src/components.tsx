import type { TaskStatus } from "@codefleet/contracts";
import type { ComponentChildren } from "preact";
import type { Problem } from "./api.js";
import { STATUS_LABEL } from "./format.js";
import { onLinkClick } from "./router.js";

export function Link(props: { href: string; children: ComponentChildren; class?: string; "aria-current"?: "page" | undefined }) {
  return (
    <a href={props.href} class={props.class} aria-current={props["aria-current"]} onClick={onLinkClick}>
      {props.children}
    </a>
  );
}

export function StatusBadge({ status }: { status: TaskStatus }) {
  return (
    <span class={`badge status-${status}`} data-status={status}>
      {STATUS_LABEL[status]}
    </span>
  );
}

/** An API error as the registry explained it (problem+json: code, detail, the schema's issues). */
export function ProblemView({ problem, title }: { problem: Problem; title?: string }) {
  return (
    <div class="problem" role="alert">
      <strong>{title ?? problemTitle(problem)}</strong>
      {problem.detail ? <p>{problem.detail}</p> : null}
      {problem.issues?.length ? (
        <ul>
          {problem.issues.map((i) => (
            <li key={`${i.path}${i.message}`}>
              <code>{i.path}</code>: {i.message}
            </li>
          ))}
        </ul>
      ) : null}
      {problem.code ? (
        <p class="muted">
          {problem.status ? `HTTP ${problem.status} · ` : ""}
          <code>{problem.code}</code>
        </p>
      ) : null}
    </div>
  );
}

function problemTitle(p: Problem): string {
  if (p.status === 0) return "The registry cannot be reached";
  if (p.status === 401) return "The registry refused the token";
  if (p.status === 403) return "This token is not allowed to do that";
  if (p.status === 404) return "Not found";
  return p.title ?? `Request failed (${p.status})`;
}

export function Labels({ labels }: { labels: Record<string, string> }) {
  const entries = Object.entries(labels);
  if (entries.length === 0) return <span class="muted">–</span>;
  return (
    <ul class="labels" aria-label="labels">
      {entries.map(([k, v]) => (
        <li key={k} class="label">
          {k}={v}
        </li>
      ))}
    </ul>
  );
}
