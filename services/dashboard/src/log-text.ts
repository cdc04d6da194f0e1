import type { LogChunk, TurnView } from "@codefleet/contracts";

/** The turn an attempt ran in: the last turn whose first attempt is at or before it (attempts are numbered across the task). */
export function turnOfAttempt(turns: readonly Pick<TurnView, "turn" | "firstAttempt">[], attempt: number): number | undefined {
  let found: number | undefined;
  for (const t of turns) if (t.firstAttempt <= attempt && (found === undefined || t.turn > found)) found = t.turn;
  return found;
}

/**
 * The log's text as the page shows it, from the chunks in the order they arrived.
 *
 * - When the log holds more than one attempt, each attempt starts with a separator line (naming
 *   its turn when the task has several).
 * - A best-of-N candidate's lines start with `[cN] `, so candidates running at once stay readable
 *   when their output interleaves. A chunk that continues its own source's unfinished line is not
 *   prefixed again; a chunk of another source starts a new line rather than joining someone
 *   else's.
 * - Output the runner dropped for the log cap (`truncated`) is said where it was dropped.
 */
export function logText(chunks: readonly LogChunk[], turns: readonly Pick<TurnView, "turn" | "firstAttempt">[] = []): string {
  const attempts = new Set(chunks.map((c) => c.attempt));
  const manyTurns = turns.length > 1;
  let out = "";
  let atLineStart = true;
  let attempt: number | undefined;
  // the source of the unfinished line: a candidate's number, or null for the attempt's own output
  let source: number | null = null;
  const newLine = () => {
    if (!atLineStart) out += "\n";
    atLineStart = true;
  };
  for (const c of chunks) {
    if (c.attempt !== attempt) {
      if (attempts.size > 1) {
        newLine();
        const turn = manyTurns ? turnOfAttempt(turns, c.attempt) : undefined;
        out += `── ${turn === undefined ? "" : `turn ${turn} · `}attempt ${c.attempt} ──\n`;
      }
      attempt = c.attempt;
    }
    const from = c.candidate ?? null;
    if (from !== source) newLine();
    source = from;
    if (c.truncated) {
      newLine();
      out += `${from === null ? "" : `[c${from}] `}… earlier output dropped (the log's size cap) …\n`;
    }
    if (c.text === "") continue;
    if (from === null) out += c.text;
    else
      c.text.split("\n").forEach((segment, i) => {
        if (i > 0) out += "\n";
        if (segment !== "" && (i > 0 || atLineStart)) out += `[c${from}] `;
        out += segment;
      });
    atLineStart = c.text.endsWith("\n");
  }
  return out;
}
