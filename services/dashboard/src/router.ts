import { useEffect, useState } from "preact/hooks";

/** A tiny history router: the registry answers every page path with index.html. */

export type Route =
  | { page: "login" }
  | { page: "tasks"; query: URLSearchParams }
  | { page: "task"; id: string }
  | { page: "submit" }
  | { page: "fleet" }
  | { page: "not-found"; path: string };

export function parseRoute(pathname: string, search: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/" || path === "/tasks") return { page: "tasks", query: new URLSearchParams(search) };
  if (path === "/login") return { page: "login" };
  if (path === "/submit") return { page: "submit" };
  if (path === "/fleet") return { page: "fleet" };
  const m = /^\/tasks\/([^/]+)$/.exec(path);
  if (m) return { page: "task", id: decodeURIComponent(m[1]!) };
  return { page: "not-found", path };
}

const listeners = new Set<() => void>();

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  if (opts.replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  for (const l of listeners) l();
}

export function useLocation(): { pathname: string; search: string } {
  const [loc, setLoc] = useState({ pathname: location.pathname, search: location.search });
  useEffect(() => {
    const update = () => setLoc({ pathname: location.pathname, search: location.search });
    listeners.add(update);
    addEventListener("popstate", update);
    return () => {
      listeners.delete(update);
      removeEventListener("popstate", update);
    };
  }, []);
  return loc;
}

/** Same-origin links navigate in the page; modified clicks (new tab...) stay the browser's. */
export function onLinkClick(e: MouseEvent): void {
  const a = (e.currentTarget ?? e.target) as HTMLAnchorElement;
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.origin !== location.origin) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
}
