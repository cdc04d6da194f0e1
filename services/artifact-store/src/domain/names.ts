import { ARTIFACT_KINDS, type ArtifactKind, ValidationError } from "@codefleet/contracts";

/**
 * Artifact names may have folders ("reports/junit.xml") but can never point outside their task:
 * no "..", no absolute paths, no backslashes, no NUL or control characters, at most 255 bytes.
 */
export function artifactNameProblem(name: string): string | undefined {
  if (name.length === 0) return "name is empty";
  if (Buffer.byteLength(name) > 255) return "name is longer than 255 bytes";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(name)) return "name contains NUL or control characters";
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) return "name is an absolute path";
  if (name.includes("\\")) return "name contains a backslash";
  const parts = name.split("/");
  if (parts.some((p) => p === "..")) return "name contains '..'";
  if (parts.some((p) => p === "" || p === ".")) return "name has an empty or '.' path segment";
  return undefined;
}

export function assertArtifactName(name: string): void {
  const problem = artifactNameProblem(name);
  if (problem) throw new ValidationError("invalid_artifact_name", `invalid artifact name: ${problem}`);
}

export function isArtifactKind(kind: string): kind is ArtifactKind {
  return (ARTIFACT_KINDS as readonly string[]).includes(kind);
}

/** Parses a single-range `Range` header against a size. undefined = whole file; "unsatisfiable" = 416. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | "unsatisfiable" | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined; // not a form we serve: answer with the whole file, as RFC 9110 allows
  const [, a, b] = m;
  if (a === "" && b === "") return undefined;
  let start: number;
  let end: number;
  if (a === "") {
    const suffix = Number(b);
    if (suffix === 0) return "unsatisfiable";
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size || start > end) return "unsatisfiable";
  return { start, end };
}
