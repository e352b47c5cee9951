/**
 * The GitHub Action: the app layer's `sign()`, as `codesign sign FILE…` runs it, with options
 * built from the workflow's inputs (errors name the input, never a command-line flag).
 * The PIN is masked before anything else runs and reaches the core through a 0600 file in a
 * private directory (never the environment of the tools we start, never a command line).
 */
import * as core from "@actions/core";
import * as glob from "@actions/glob";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { isCodesignError } from "../core/errors.js";
import { withPrivateDir } from "../core/util/temp.js";
import { ensureAddon, installDebianTools } from "../../adapters/setup.js";
import { TOOL_CHOICES, sign, type FileResult, type HashName, type ToolChoice } from "../app/index.js";

/** Newline-separated input, blank lines and surrounding spaces dropped. */
const lines = (name: string): string[] =>
  core
    .getMultilineInput(name)
    .map((l) => l.trim())
    .filter(Boolean);

const optional = (name: string): string | undefined => core.getInput(name).trim() || undefined;

/** Paths and globs, in the order given; a line that matches nothing is an error, not a silent skip. */
async function expandFiles(patterns: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const p of patterns) {
    if (existsSync(p)) {
      files.push(p);
      continue;
    }
    const matches = await (await glob.create(p, { matchDirectories: false })).glob();
    if (matches.length === 0) throw new Error(`files: "${p}" matches no file`);
    files.push(...matches.sort().map((m) => path.relative(process.cwd(), m) || m));
  }
  return [...new Set(files)];
}

/** A whole number ≥ 1, or undefined when the input is empty. */
function positiveInteger(name: string): number | undefined {
  const text = optional(name);
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: "${text}" is not a whole number ≥ 1`);
  return n;
}

/** A number > 0, or undefined when the input is empty. */
function positiveNumber(name: string): number | undefined {
  const text = optional(name);
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: "${text}" is not a number > 0`);
  return n;
}

function choice<T extends string>(name: string, allowed: readonly T[]): T | undefined {
  const text = optional(name);
  if (text === undefined) return undefined;
  if (!allowed.includes(text as T)) throw new Error(`${name}: "${text}" is not one of ${allowed.join(", ")}`);
  return text as T;
}

function summary(results: FileResult[]): Promise<unknown> {
  const rows = results.map((r) => [
    r.input,
    r.ok ? r.output : "",
    r.ok ? "✅ signed" : `❌ ${r.error?.message ?? "failed"}`,
  ]);
  return core.summary
    .addHeading("codesign", 3)
    .addTable([
      [
        { data: "file", header: true },
        { data: "output", header: true },
        { data: "result", header: true },
      ],
      ...rows,
    ])
    .write();
}

export async function main(): Promise<void> {
  const pin = core.getInput("pin");
  if (pin) core.setSecret(pin); // first: from here on the runner masks it in every log line
  const moduleArgs = core.getInput("module-args");
  if (moduleArgs) core.setSecret(moduleArgs); // an init string can hold a password too
  try {
    if (core.getBooleanInput("install-tools")) await installDebianTools((m) => core.info(m));
    await ensureAddon((m) => core.info(m));
    const remote = optional("remote");
    if (remote) process.env["CODESIGN_REMOTE"] = remote;
    const files = await expandFiles(lines("files"));
    if (files.length === 0) throw new Error("files: no file to sign");
    const options = {
      files,
      key: core.getInput("key", { required: true }),
      module: optional("module"),
      moduleArgs: optional("module-args"),
      tool: choice<ToolChoice>("tool", TOOL_CHOICES) ?? "auto",
      outDir: optional("out-dir"),
      cert: optional("cert"),
      chain: lines("chain"),
      timestamp: {
        urls: lines("timestamp-url"),
        onFailure: ({ url, reason }: { url: string; reason: string }) =>
          core.warning(`timestamp server ${url}: ${reason}`),
        jobs: positiveInteger("timestamp-jobs"),
        ratePerSecond: positiveNumber("timestamp-rate"),
        onSkip: ({ url, failures }: { url: string; failures: number }) =>
          core.warning(
            `timestamp server ${url} failed ${failures} times in a row: skipped for the rest of this run`,
          ),
      },
      hash: choice<HashName>("hash", ["sha256", "sha384", "sha512"]),
      jobs: optional("jobs") === "auto" ? ("auto" as const) : positiveInteger("jobs"),
    };
    const results = await withPrivateDir(async (dir) => {
      let pinFile = optional("pin-file");
      if (pin) {
        pinFile = path.join(dir, "pin");
        await writeFile(pinFile, pin, { mode: 0o600 });
      }
      return (await sign({ ...options, pinFile })).files;
    }, "codesign-action-");
    const signed = results.filter((r) => r.ok);
    for (const r of signed) core.info(`signed ${r.input} -> ${r.output}`);
    core.setOutput("signed-files", signed.map((r) => r.output).join("\n"));
    await summary(results);
    const failed = results.filter((r) => !r.ok);
    if (failed.length > 0) {
      core.setFailed(
        `${failed.length} of ${results.length} files failed:\n` +
          failed.map((r) => `${r.input}: ${r.error?.message ?? "failed"}`).join("\n"),
      );
    }
  } catch (e) {
    core.setOutput("signed-files", ""); // nothing was signed: later steps see an empty list, not a missing one
    if (isCodesignError(e)) core.setFailed(e.hint ? `${e.message}\nhint: ${e.hint}` : e.message);
    else core.setFailed(e instanceof Error ? e.message : String(e));
  }
}

await main();
