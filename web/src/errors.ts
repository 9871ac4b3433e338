import type { ErrorKind, ErrorPayload } from "./types.js";

const KINDS: readonly string[] = ["format", "unsupported", "input", "device", "io", "aborted", "crash"];

/** A typed error from webpeft: `kind` says what broke, `source` names the file or input, `line` the line in a data file. */
export class WebPeftError extends Error {
  readonly kind: ErrorKind;
  readonly source?: string;
  readonly line?: number;

  constructor(kind: ErrorKind, message: string, source?: string, line?: number) {
    super(message);
    this.name = "WebPeftError";
    this.kind = kind;
    if (source !== undefined) this.source = source;
    if (line !== undefined) this.line = line;
  }

  static fromPayload(p: ErrorPayload): WebPeftError {
    return new WebPeftError(p.kind, p.message, p.source, p.line);
  }

  toPayload(): ErrorPayload {
    return { kind: this.kind, message: this.message, source: this.source, line: this.line };
  }
}

export function isKind(k: unknown): k is ErrorKind {
  return typeof k === "string" && KINDS.includes(k);
}

/** The first `line N` in a message (the core writes "file: line N: ..."). */
export function lineOf(message: string): number | undefined {
  const m = /\bline (\d+)\b/.exec(message);
  return m ? Number(m[1]) : undefined;
}

/** Splits the core's "source: message" into its source (a file or input name). */
export function sourceOf(message: string): string | undefined {
  const i = message.indexOf(": ");
  if (i <= 0) return undefined;
  const s = message.slice(0, i);
  // A source is a name, not a sentence.
  return s.length <= 200 && !/\s{2}|\n/.test(s) && !/^line \d+$/.test(s) ? s : undefined;
}

/** A payload with source and line parsed from the message. */
export function payload(kind: ErrorKind, message: string, source?: string): ErrorPayload {
  return { kind, message, source: source ?? sourceOf(message), line: lineOf(message) };
}
