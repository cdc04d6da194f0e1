/** Longest piece of one diff line held before it is handed on (an endless line is scanned in pieces). */
export const MAX_HELD_LINE_CHARS = 1024 * 1024;

/**
 * Reads `git diff --unified=0` output as it streams and hands on the text of the lines the diff
 * adds (without their `+`, each ending in a newline), in order: what a secret scan must read.
 * Headers (`+++ b/…`) and removed or context lines are not handed on, however long; a line longer
 * than `maxHeld` is handed on in pieces, and its later pieces keep the kind of its first.
 */
export class AddedLines {
  private held = "";
  /** The kind of the line being held, once its first piece was handed on. */
  private continuing: "added" | "other" | undefined;

  constructor(
    private readonly onText: (text: string) => void,
    private readonly maxHeld = MAX_HELD_LINE_CHARS,
  ) {}

  push(text: string): void {
    const lines = (this.held + text).split("\n");
    this.held = lines.pop() ?? "";
    for (const line of lines) this.line(line, true);
    if (this.held.length > this.maxHeld) {
      const piece = this.held;
      this.held = "";
      this.line(piece, false);
    }
  }

  end(): void {
    if (this.held || this.continuing) this.line(this.held, true);
    this.held = "";
  }

  private line(piece: string, complete: boolean): void {
    let kind = this.continuing;
    let text = piece;
    if (kind === undefined) {
      kind = piece.startsWith("+") && !piece.startsWith("+++ ") ? "added" : "other";
      text = piece.slice(1);
    }
    if (kind === "added") this.onText(complete ? `${text}\n` : text);
    this.continuing = complete ? undefined : kind;
  }
}
