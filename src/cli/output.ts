import { inspect } from "node:util";
import { CodesignError } from "../core/errors.js";

/** Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org). */
export function useColor(stream: NodeJS.WriteStream = process.stderr): boolean {
  return (
    stream.isTTY === true &&
    !("NO_COLOR" in process.env && process.env["NO_COLOR"] !== "") &&
    process.env["TERM"] !== "dumb"
  );
}

function paint(code: string, text: string, stream: NodeJS.WriteStream): string {
  return useColor(stream) ? `\x1b[${code}m${text}\x1b[0m` : text;
}

export const style = {
  bold: (t: string, s: NodeJS.WriteStream = process.stdout) => paint("1", t, s),
  dim: (t: string, s: NodeJS.WriteStream = process.stdout) => paint("2", t, s),
  red: (t: string, s: NodeJS.WriteStream = process.stderr) => paint("31", t, s),
  green: (t: string, s: NodeJS.WriteStream = process.stdout) => paint("32", t, s),
  yellow: (t: string, s: NodeJS.WriteStream = process.stderr) => paint("33", t, s),
};

let jsonWritten = false;
/** A report that says it failed (`ok: false`), held until main knows the error to add to it. */
let failedReport: Record<string, unknown> | undefined;

const writeJson = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
};

export function printJson(value: unknown): void {
  jsonWritten = true;
  if (typeof value === "object" && value !== null && (value as { ok?: unknown }).ok === false)
    failedReport = value as Record<string, unknown>;
  else writeJson(value);
}

/**
 * The end of a run's JSON on stdout, called once by main: a failed report held back gets the
 * run's error added (`{...report, error}`); a failure with no report yet prints
 * `{"ok":false,"error":…}` when --json was asked for. Either way stdout holds one document.
 */
export function finishJson(failure: { error: unknown } | undefined, json: boolean): void {
  const report = failedReport;
  failedReport = undefined;
  if (report) writeJson(failure ? { ...report, error: errorJson(failure.error) } : report);
  else if (failure && json && !jsonWritten) writeJson({ ok: false, error: errorJson(failure.error) });
}

/** What a failure is to a script: `{code, message, hint}`, the code the one the exit code comes from. */
export function errorJson(e: unknown): { code: string; message: string; hint: string | null } {
  if (e instanceof CodesignError) return { code: e.code, message: e.message, hint: e.hint ?? null };
  return {
    code: "UNEXPECTED",
    message: `unexpected failure: ${e instanceof Error ? e.message : String(e)}`,
    hint: "this is a bug in codesign; run again with --debug and report it",
  };
}

/**
 * Text from a token or the file system made safe for a terminal: control characters (C0, DEL,
 * C1) become visible escapes, so a label cannot move the cursor, fake a line or hide a row.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

export function printLine(text = ""): void {
  process.stdout.write(`${text}\n`);
}

/** Status lines go to stderr so stdout stays clean for data. */
export function info(text: string): void {
  process.stderr.write(`${text}\n`);
}

export function warn(text: string): void {
  process.stderr.write(`${style.yellow("warning:")} ${text}\n`);
}

/** Aligned columns for human-readable listings; every cell made printable. */
export function table(cells: string[][]): string {
  const rows = cells.map((row) => row.map(printable));
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  "),
    )
    .join("\n");
}

export function formatError(e: unknown, debug: boolean): string {
  const lines: string[] = [];
  if (e instanceof CodesignError) {
    lines.push(`${style.red("error:")} ${e.message}`);
    if (e.hint) lines.push(`  ${style.dim("hint:", process.stderr)} ${e.hint}`);
  } else {
    lines.push(`${style.red("error:")} unexpected failure: ${e instanceof Error ? e.message : String(e)}`);
    lines.push("  hint: this is a bug in codesign; run again with --debug and report it");
  }
  if (debug) {
    lines.push(e instanceof Error ? (e.stack ?? e.message) : inspect(e));
    if (e instanceof Error && e.cause !== undefined) lines.push(`cause: ${inspect(e.cause, { depth: 4 })}`);
  }
  return `codesign: ${lines.join("\n")}\n`;
}

/** Where to look when a module shows no token: the dev token and SoftHSM2's configuration. */
export function noTokensHint(env: NodeJS.ProcessEnv = process.env): string {
  const conf = env["SOFTHSM2_CONF"];
  return [
    'for the SoftHSM2 dev token run `eval "$(codesign dev-token init)"`, which creates it and sets SOFTHSM2_CONF',
    conf
      ? `SoftHSM2 reads its tokens from the directory named in SOFTHSM2_CONF=${printable(conf)}`
      : "SOFTHSM2_CONF is not set, so SoftHSM2 uses its system-wide store",
    "for another module, give --module (or CODESIGN_PKCS11_MODULE) and check that its token is inserted",
  ].join("; ");
}

/**
 * A command's examples as its epilogue. yargs' example column wraps at any character, cutting URIs
 * in two; these lines are printed as written. Each example is a comment and a command given as
 * lines that continue with " \\" — every line fits 78 columns, so nothing is wrapped at 80.
 */
export function examples(...list: ReadonlyArray<readonly [comment: string, ...lines: string[]]>): string {
  const out = ["Examples:"];
  for (const [comment, ...lines] of list) {
    out.push(`  # ${comment}`);
    lines.forEach((line, i) =>
      out.push(`${i === 0 ? "  " : "      "}${line}${i < lines.length - 1 ? " \\" : ""}`),
    );
  }
  return out.join("\n");
}
