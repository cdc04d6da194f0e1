import { useEffect, useMemo, useState } from "preact/hooks";
import { Api, type Problem } from "./api.js";
import { Link } from "./components.js";
import { FleetPage } from "./pages/fleet.js";
import { LoginPage } from "./pages/login.js";
import { SubmitPage } from "./pages/submit.js";
import { TaskPage } from "./pages/task.js";
import { TasksPage } from "./pages/tasks.js";
import { navigate, parseRoute, useLocation } from "./router.js";
import { clearToken, loadToken, saveToken } from "./session.js";

export type DashboardConfig = { jaegerUrl: string };

async function loadConfig(): Promise<DashboardConfig> {
  try {
    const res = await fetch("/dashboard-config.json");
    if (res.ok) return (await res.json()) as DashboardConfig;
  } catch {
    /* the defaults */
  }
  return { jaegerUrl: "http://localhost:16686" };
}

export function App() {
  const loc = useLocation();
  const route = parseRoute(loc.pathname, loc.search);
  const [token, setToken] = useState<string | undefined>(loadToken());
  const [expired, setExpired] = useState<Problem | undefined>();
  const [config, setConfig] = useState<DashboardConfig>({ jaegerUrl: "http://localhost:16686" });
  useEffect(() => {
    void loadConfig().then(setConfig);
  }, []);

  const api = useMemo(
    () =>
      token
        ? new Api(token, (problem) => {
            // the token stopped working (rotated, removed): back to the token field, saying why
            clearToken();
            setExpired(problem);
            setToken(undefined);
          })
        : undefined,
    [token],
  );

  useEffect(() => {
    const title = { login: "Sign in", tasks: "Tasks", task: "Task", submit: "Submit a task", fleet: "Fleet", "not-found": "Not found" }[
      route.page
    ];
    document.title = `${title} · codefleet`;
  }, [route.page]);

  if (!api || route.page === "login") {
    return (
      <LoginPage
        {...(expired ? { expired } : {})}
        onLogin={(t) => {
          saveToken(t);
          setExpired(undefined);
          setToken(t);
          if (route.page === "login") navigate("/tasks", { replace: true });
        }}
      />
    );
  }

  const nav = (href: string, label: string, page: string) => (
    <li>
      <Link href={href} aria-current={route.page === page ? "page" : undefined}>
        {label}
      </Link>
    </li>
  );

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/tasks" class="brand">
          codefleet
        </Link>
        <nav aria-label="Main">
          <ul>
            {nav("/tasks", "Tasks", "tasks")}
            {nav("/submit", "Submit", "submit")}
            {nav("/fleet", "Fleet", "fleet")}
          </ul>
        </nav>
        <button
          type="button"
          class="link-button"
          onClick={() => {
            clearToken();
            setToken(undefined);
            navigate("/login");
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {route.page === "tasks" && <TasksPage api={api} query={route.query} />}
        {route.page === "task" && <TaskPage api={api} id={route.id} jaegerUrl={config.jaegerUrl} />}
        {route.page === "submit" && <SubmitPage api={api} />}
        {route.page === "fleet" && <FleetPage api={api} />}
        {route.page === "not-found" && (
          <section>
            <h1>Not found</h1>
            <p>
              No page at <code>{route.path}</code>. <Link href="/tasks">Tasks</Link>
            </p>
          </section>
        )}
      </main>
    </>
  );
}
