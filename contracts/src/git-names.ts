/**
 * Git ref and branch names that reach git as arguments. The rules follow
 * git-check-ref-format plus two of ours: no leading '-' (option injection) and a bounded length.
 */
export const GIT_REF_PATTERN = "^(?!-)(?!.*\\.\\.)(?!.*@\\{)(?!.*//)(?!/)[A-Za-z0-9._/@+-]{1,200}(?<!\\.lock)(?<![./])$";
const GIT_REF_RE = new RegExp(GIT_REF_PATTERN);

export function isSafeGitRef(name: string): boolean {
  // git-check-ref-format's per-component rules, which the pattern checks only for the whole name
  return GIT_REF_RE.test(name) && name !== "@" && !name.split("/").some((part) => part.startsWith(".") || part.endsWith(".lock"));
}

/** Why a ref name is refused, for error messages; undefined when it is fine. */
export function gitRefProblem(name: string): string | undefined {
  if (name.length === 0) return "is empty";
  if (name.length > 200) return "is longer than 200 characters";
  if (name.startsWith("-")) return "starts with '-'";
  if (name.includes("..")) return "contains '..'";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(name)) return "contains control characters";
  if (!isSafeGitRef(name)) return "is not a valid git ref name (allowed: letters, digits, . _ / @ + -)";
  return undefined;
}
