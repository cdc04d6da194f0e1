import { useState } from "preact/hooks";
import { ApiError, type Problem, verifyToken } from "../api.js";
import { ProblemView } from "../components.js";

/** The token field: the token is checked against the API, then kept for this tab's session only. */
export function LoginPage({ onLogin, expired }: { onLogin: (token: string) => void; expired?: Problem }) {
  const [token, setToken] = useState("");
  const [problem, setProblem] = useState<Problem | undefined>(expired);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const t = token.trim();
    if (!t) {
      setProblem({
        status: 0,
        code: "token_required",
        title: "Enter an API token",
        detail: "The dashboard uses the registry's API with your token.",
      });
      return;
    }
    setBusy(true);
    setProblem(undefined);
    try {
      await verifyToken(t);
      onLogin(t);
    } catch (err) {
      setProblem(err instanceof ApiError ? err.problem : { status: 0, detail: (err as Error).message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="login">
      <form onSubmit={submit} aria-labelledby="login-title" class="card">
        <h1 id="login-title">codefleet</h1>
        <p class="muted">
          Sign in with an API token. It is kept in this browser tab only (session storage) and sent to the registry as a bearer token.
        </p>
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          spellcheck={false}
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
          aria-describedby={problem ? "login-problem" : undefined}
          aria-invalid={problem ? true : undefined}
          required
        />
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        {problem ? (
          <div id="login-problem">
            <ProblemView
              problem={problem}
              {...(expired && problem === expired ? { title: "Your session ended: the registry no longer accepts the token" } : {})}
            />
          </div>
        ) : null}
      </form>
    </main>
  );
}
