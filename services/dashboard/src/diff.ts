/** A unified diff (git diff output) split into files and hunks, for the diff viewer. */

export type DiffLine = { kind: "add" | "del" | "ctx" | "note"; text: string; oldNo?: number; newNo?: number };
export type DiffHunk = { header: string; lines: DiffLine[] };
export type DiffFile = {
  /** The path after the change (the old one for a deletion). */
  path: string;
  oldPath?: string;
  status: "added" | "deleted" | "modified" | "renamed";
  binary: boolean;
  additions: number;
  deletions: number;
  hunks: DiffHunk[];
};

function unquote(p: string): string {
  if (p.startsWith('"') && p.endsWith('"')) {
    try {
      return JSON.parse(p) as string;
    } catch {
      return p.slice(1, -1);
    }
  }
  return p;
}

function stripPrefix(p: string): string | undefined {
  const u = unquote(p.trim());
  if (u === "/dev/null") return undefined;
  return u.replace(/^[ab]\//, "");
}

export function parseUnifiedDiff(text: string): DiffFile[] {
  const files: DiffFile[] = [];
  let file: DiffFile | undefined;
  let hunk: DiffHunk | undefined;
  let oldNo = 0;
  let newNo = 0;
  const start = (path: string): DiffFile => {
    const f: DiffFile = { path, status: "modified", binary: false, additions: 0, deletions: 0, hunks: [] };
    files.push(f);
    hunk = undefined;
    return f;
  };
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) {
    if (line.startsWith("diff --git ")) {
      const m = /^diff --git ("?a\/.*?"?) ("?b\/.*"?)$/.exec(line);
      file = start(m ? (stripPrefix(m[2]!) ?? "") : line.slice(11));
      if (m) {
        const oldPath = stripPrefix(m[1]!);
        if (oldPath && oldPath !== file.path) file.oldPath = oldPath;
      }
      continue;
    }
    if (hunk && file && (line.startsWith("+") || line.startsWith("-") || line.startsWith(" ") || line.startsWith("\\"))) {
      if (line.startsWith("+")) {
        hunk.lines.push({ kind: "add", text: line.slice(1), newNo: newNo++ });
        file.additions++;
      } else if (line.startsWith("-")) {
        hunk.lines.push({ kind: "del", text: line.slice(1), oldNo: oldNo++ });
        file.deletions++;
      } else if (line.startsWith(" ")) {
        hunk.lines.push({ kind: "ctx", text: line.slice(1), oldNo: oldNo++, newNo: newNo++ });
      } else hunk.lines.push({ kind: "note", text: line.slice(1).trim() });
      continue;
    }
    const h = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$/.exec(line);
    if (h) {
      file ??= start("(unnamed)");
      hunk = { header: line, lines: [] };
      file.hunks.push(hunk);
      oldNo = Number(h[1]);
      newNo = Number(h[2]);
      continue;
    }
    if (line.startsWith("--- ")) {
      const p = stripPrefix(line.slice(4));
      if (!file) file = start(p ?? "");
      if (p === undefined) file.status = "added";
      else if (!file.oldPath && p !== file.path) file.oldPath = p;
      hunk = undefined;
      continue;
    }
    if (line.startsWith("+++ ") && file) {
      const p = stripPrefix(line.slice(4));
      if (p === undefined) file.status = "deleted";
      else file.path = p;
      continue;
    }
    if (!file) continue;
    if (line.startsWith("new file mode")) file.status = "added";
    else if (line.startsWith("deleted file mode")) file.status = "deleted";
    else if (line.startsWith("rename from ")) {
      file.oldPath = unquote(line.slice(12));
      file.status = "renamed";
    } else if (line.startsWith("rename to ")) {
      file.path = unquote(line.slice(10));
      file.status = "renamed";
    } else if (line.startsWith("Binary files ") || line === "GIT binary patch") file.binary = true;
  }
  for (const f of files) if (f.oldPath && f.oldPath !== f.path && f.status === "modified") f.status = "renamed";
  return files;
}

const LANGUAGES: Record<string, string> = {
  ts: "typescript",
  tsx: "typescript",
  mts: "typescript",
  cts: "typescript",
  js: "javascript",
  jsx: "javascript",
  mjs: "javascript",
  cjs: "javascript",
  json: "json",
  py: "python",
  go: "go",
  rs: "rust",
  java: "java",
  kt: "kotlin",
  rb: "ruby",
  sh: "bash",
  bash: "bash",
  zsh: "bash",
  yml: "yaml",
  yaml: "yaml",
  md: "markdown",
  css: "css",
  scss: "scss",
  html: "xml",
  xml: "xml",
  svg: "xml",
  sql: "sql",
  c: "c",
  h: "c",
  cc: "cpp",
  cpp: "cpp",
  hpp: "cpp",
  cs: "csharp",
  php: "php",
  swift: "swift",
  toml: "ini",
  ini: "ini",
  dockerfile: "dockerfile",
  diff: "diff",
  patch: "diff",
};

/** The highlight.js language of a path, by extension or well-known name; undefined: plain text. */
export function languageOf(path: string): string | undefined {
  const name = path.split("/").pop()?.toLowerCase() ?? "";
  if (name === "dockerfile" || name.startsWith("dockerfile.")) return "dockerfile";
  if (name === "makefile") return "makefile";
  const ext = name.includes(".") ? name.split(".").pop()! : "";
  return LANGUAGES[ext];
}
