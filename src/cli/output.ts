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

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
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

/** Aligned columns for human-readable listings. */
export function table(rows: string[][]): string {
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
