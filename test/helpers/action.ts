import { execa } from "execa";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { ROOT } from "./cli.js";

export const BUNDLE = path.join(ROOT, "dist", "action", "index.js");

export interface ActionRun {
  exitCode: number;
  log: string;
  outputs: string;
  summary: string;
}

/**
 * One run of the bundled action in `cwd`, as the runner does it: INPUT_* variables named by
 * upper-casing the input and keeping its hyphens (out-dir -> INPUT_OUT-DIR), GITHUB_OUTPUT and
 * GITHUB_STEP_SUMMARY files, nothing else from our environment but `env`.
 */
export async function runAction(
  cwd: string,
  inputs: Record<string, string>,
  env: Record<string, string>,
): Promise<ActionRun> {
  const outputFile = path.join(cwd, "github-output");
  const summaryFile = path.join(cwd, "github-summary");
  await writeFile(outputFile, "");
  await writeFile(summaryFile, "");
  const all: Record<string, string> = {
    PATH: process.env["PATH"] ?? "/usr/bin:/bin",
    ...env,
    GITHUB_OUTPUT: outputFile,
    GITHUB_STEP_SUMMARY: summaryFile,
    "INPUT_INSTALL-TOOLS": "false",
  };
  for (const [k, v] of Object.entries(inputs)) all[`INPUT_${k.toUpperCase()}`] = v;
  const r = await execa("node", [BUNDLE], { cwd, env: all, extendEnv: false, reject: false, all: true });
  return {
    exitCode: r.exitCode ?? -1,
    log: String(r.all),
    outputs: await readFile(outputFile, "utf8"),
    summary: await readFile(summaryFile, "utf8"),
  };
}

/** The value of one output in a GITHUB_OUTPUT file (`name<<DELIMITER … DELIMITER`). */
export function actionOutput(file: string, name: string): string {
  const m = new RegExp(`^${name}<<(\\S+)\\n([\\s\\S]*?)\\n\\1$`, "m").exec(file);
  if (!m) throw new Error(`no output ${name} in:\n${file}`);
  return m[2] ?? "";
}

/** The log as a user sees it: the runner consumes ::add-mask:: commands instead of printing them. */
export const visibleLog = (log: string): string =>
  log
    .split("\n")
    .filter((l) => !l.startsWith("::add-mask::"))
    .join("\n");
