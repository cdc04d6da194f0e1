import { LIMIT_DEFAULTS, LIMIT_MAXIMA, MAX_CANDIDATES } from "@codefleet/contracts";
import { useState } from "preact/hooks";
import { type Api, ApiError, type Problem } from "../api.js";
import { ProblemView } from "../components.js";
import { navigate } from "../router.js";
import { AGENT_KINDS, EMPTY_FORM, type FieldError, fieldOf, type SpecForm, specFromForm, validateSpec } from "../spec-form.js";

type FieldProps = {
  name: keyof SpecForm;
  label: string;
  form: SpecForm;
  errors: FieldError[];
  set: (name: keyof SpecForm, value: string) => void;
  hint?: string;
  multiline?: number;
  type?: "text" | "number";
  placeholder?: string;
  required?: boolean;
  step?: string;
};

function Field({ name, label, form, errors, set, hint, multiline, type, placeholder, required, step }: FieldProps) {
  const mine = errors.filter((e) => fieldOf(e.path) === name);
  const id = `spec-${name}`;
  const described = [hint ? `${id}-hint` : "", mine.length ? `${id}-error` : ""].filter(Boolean).join(" ") || undefined;
  const common = {
    id,
    name,
    value: String(form[name]),
    "aria-describedby": described,
    "aria-invalid": mine.length ? true : undefined,
    required,
    placeholder,
    onInput: (e: Event) => set(name, (e.target as HTMLInputElement).value),
  };
  return (
    <div class={`field${mine.length ? " invalid" : ""}`}>
      <label for={id}>
        {label}
        {required ? <span aria-hidden="true"> *</span> : null}
      </label>
      {multiline ? (
        <textarea rows={multiline} {...common} spellcheck={false} />
      ) : type === "number" ? (
        <input type="number" step={step} {...common} />
      ) : (
        <input type="text" {...common} />
      )}
      {hint ? (
        <p id={`${id}-hint`} class="hint">
          {hint}
        </p>
      ) : null}
      {mine.length ? (
        <p id={`${id}-error`} class="error">
          {mine.map((e) => e.message).join("; ")}
        </p>
      ) : null}
    </div>
  );
}

/** The submit form: checked in the page with the API's own TaskSpec schema, then by the API itself. */
export function SubmitPage({ api }: { api: Api }) {
  const [form, setForm] = useState<SpecForm>(EMPTY_FORM);
  const [errors, setErrors] = useState<FieldError[]>([]);
  const [problem, setProblem] = useState<Problem | undefined>();
  const [busy, setBusy] = useState(false);
  const set = (name: keyof SpecForm, value: string | boolean) => setForm((f) => ({ ...f, [name]: value }));
  const common = { form, errors, set };
  const kind = form.agentKind;

  const submit = async (e: Event) => {
    e.preventDefault();
    setProblem(undefined);
    const built = specFromForm(form);
    const checked = validateSpec(built.spec);
    const all = [...built.errors, ...(checked.ok ? [] : checked.errors)];
    setErrors(all);
    if (all.length || !checked.ok) {
      requestAnimationFrame(() => document.getElementById("spec-errors")?.focus());
      return;
    }
    setBusy(true);
    try {
      const task = await api.submit(checked.spec);
      navigate(`/tasks/${task.id}`);
    } catch (err) {
      setProblem(err instanceof ApiError ? err.problem : { status: 0, detail: (err as Error).message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="submit-title">
      <h1 id="submit-title">Submit a task</h1>
      <form class="spec" onSubmit={submit} noValidate aria-label="Task spec">
        {errors.length ? (
          <div id="spec-errors" class="problem" role="alert" tabIndex={-1}>
            <strong>
              The task is not valid ({errors.length} problem{errors.length === 1 ? "" : "s"})
            </strong>
            <ul>
              {errors.map((e) => (
                <li key={`${e.path}${e.message}`}>
                  <code>{e.path}</code>: {e.message}
                </li>
              ))}
            </ul>
          </div>
        ) : null}
        {problem ? <ProblemView problem={problem} title="The registry refused the task" /> : null}

        <fieldset>
          <legend>Task</legend>
          <Field name="title" label="Title" required {...common} />
          <Field name="prompt" label="Prompt" multiline={5} hint="What the agent should do." {...common} />
        </fieldset>

        <fieldset>
          <legend>Repository</legend>
          <Field name="repoUrl" label="Repository URL" required placeholder="https://github.com/acme/app.git" {...common} />
          <Field name="ref" label="Ref" placeholder="main (default: the remote's default branch)" {...common} />
        </fieldset>

        <fieldset>
          <legend>Agent</legend>
          <div class="field">
            <label for="spec-agentKind">Agent</label>
            <select id="spec-agentKind" value={kind} onChange={(e) => set("agentKind", (e.target as HTMLSelectElement).value)}>
              {AGENT_KINDS.map((k) => (
                <option key={k} value={k}>
                  {k}
                </option>
              ))}
            </select>
          </div>
          {kind === "script" ? (
            <Field name="steps" label="Steps" multiline={4} hint="One shell command per line, run in order in /workspace." {...common} />
          ) : null}
          {kind === "command" ? (
            <Field name="steps" label="Command" multiline={4} hint="argv, one element per line (no shell)." {...common} />
          ) : null}
          {kind === "openai" || kind === "opencode" || kind === "claude-code" ? (
            <>
              <Field name="model" label="Model" required={kind !== "claude-code"} {...common} />
              <Field name="baseUrl" label="Base URL" hint="OpenAI-compatible endpoint (optional)." {...common} />
              <Field name="apiKeySecret" label="API key secret" hint="The name of a secret the runner holds, never the key." {...common} />
            </>
          ) : null}
        </fieldset>

        <fieldset>
          <legend>Test and limits</legend>
          <Field
            name="testCommand"
            label="Test command"
            placeholder="npm test"
            hint="Run after the agent; the task succeeds only if it passes."
            {...common}
          />
          <div class="row">
            <Field
              name="timeoutSeconds"
              label="Timeout (s)"
              type="number"
              placeholder={String(LIMIT_DEFAULTS.timeoutSeconds)}
              hint={`10 – ${LIMIT_MAXIMA.timeoutSeconds}`}
              {...common}
            />
            <Field
              name="memoryMb"
              label="Memory (MB)"
              type="number"
              placeholder={String(LIMIT_DEFAULTS.memoryMb)}
              hint={`64 – ${LIMIT_MAXIMA.memoryMb}`}
              {...common}
            />
            <Field
              name="cpus"
              label="CPUs"
              type="number"
              step="0.1"
              placeholder={String(LIMIT_DEFAULTS.cpus)}
              hint={`0.1 – ${LIMIT_MAXIMA.cpus}`}
              {...common}
            />
            <Field
              name="candidates"
              label="Candidates"
              type="number"
              placeholder="1"
              hint={`Best of 1 – ${MAX_CANDIDATES}: run at once, the tests pick the one pushed`}
              {...common}
            />
          </div>
          <Field name="labels" label="Labels" multiline={2} hint="key=value, one per line." {...common} />
          <div class="field checkbox">
            <input
              id="spec-push"
              type="checkbox"
              checked={form.pushEnabled}
              onChange={(e) => set("pushEnabled", (e.target as HTMLInputElement).checked)}
            />
            <label for="spec-push">Push the result to a branch</label>
          </div>
        </fieldset>

        <button type="submit" disabled={busy}>
          {busy ? "Submitting…" : "Submit task"}
        </button>
      </form>
    </section>
  );
}
