/**
 * The one way codesign runs another program: execa with an argument array (never a shell), an
 * environment without secrets (the PIN only for a tool that logs in itself, never on argv),
 * failures turned into exit 5 with the tool's own words, and any secret scrubbed from reports.
 */
import { execa } from "execa";
import { accessSync, constants } from "node:fs";
import path from "node:path";
import { CodesignError } from "../src/core/errors.js";
import type { Secret } from "../src/core/pkcs11/pin.js";
import { viaSpawner, type SpawnReply } from "./spawner.js";

export interface ToolRun {
  /** Display name, e.g. "osslsigncode". */
  tool: string;
  /** Executable to run (absolute path from findTool, or a name on PATH). */
  file: string;
  args: readonly string[];
  /** Extra environment for the child (merged over ours). */
  env?: Record<string, string | undefined>;
  /** Only for a tool that must log in itself: the PIN in one environment variable of that child. */
  pin?: { secret: Secret; via: "env"; name: string };
  cancelSignal?: AbortSignal;
  cwd?: string;
}

export interface ToolOutput {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Finds an executable: `toolPath` when given, else the first match on PATH. */
export function findTool(name: string, toolPath?: string): string {
  const candidates = toolPath
    ? [toolPath]
    : (process.env["PATH"] ?? "")
        .split(path.delimiter)
        .filter(Boolean)
        .map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // keep looking
    }
  }
  throw new CodesignError(
    "TOOL_FAILED",
    toolPath ? `${toolPath} is not an executable` : `${name} is not installed (not on PATH)`,
    {
      hint: toolPath
        ? "check --tool-path"
        : `install it (scripts/bootstrap does), or give its location with --tool-path`,
    },
  );
}

/**
 * The environment a child starts with: ours without any secret. CODESIGN_PIN (and the Action's
 * INPUT_PIN) stay in codesign's process; a tool that must log in itself gets the PIN in its one
 * variable (ToolRun.pin), nothing else does.
 */
export function childEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && !SECRET_VARIABLE.test(name)) out[name] = value;
  }
  return out;
}
const SECRET_VARIABLE = /(^|_)(PIN|PASSWORD|PASSPHRASE|SECRET)(_|$)|^CODESIGN_PKCS11_MODULE_ARGS$/i;

function scrub(text: string, secret: Secret | undefined): string {
  const value = secret?.reveal();
  return value ? text.split(value).join("****") : text;
}

/** Runs the tool and returns its output, whatever its exit code (the caller reads the words). */
export async function runToolRaw(run: ToolRun): Promise<ToolOutput> {
  // A tool that gets no PIN may be started by the helper process, which forks far cheaper.
  const helper = run.pin ? undefined : viaSpawner(childEnvironment());
  if (helper)
    return fromHelper(
      run,
      await helper.run(
        {
          file: run.file,
          args: run.args,
          env: childEnvironment({ ...process.env, ...run.env }),
          cwd: run.cwd,
        },
        run.cancelSignal,
      ),
    );
  const pinEnv = run.pin ? { [run.pin.name]: run.pin.secret.reveal() } : {};
  const child = execa(run.file, [...run.args], {
    env: { ...childEnvironment(), ...run.env, ...pinEnv },
    extendEnv: false,
    reject: false,
    stripFinalNewline: false,
    ...(run.cwd ? { cwd: run.cwd } : {}),
    ...(run.cancelSignal ? { cancelSignal: run.cancelSignal } : {}),
    stdin: "ignore",
  });
  const r = await child;
  if (r.failed && r.exitCode === undefined) {
    if (r.isCanceled || r.isTerminated) {
      const err = new Error(`${run.tool} gave no answer in time`);
      err.name = "TimeoutError";
      throw err;
    }
    const code = (r.cause as NodeJS.ErrnoException | undefined)?.code;
    throw new CodesignError(
      "TOOL_FAILED",
      code === "ENOENT"
        ? `${run.tool} is not installed (${run.file} not found)`
        : `${run.tool} could not start: ${r.shortMessage}`,
      { hint: "install it (scripts/bootstrap does), or give its location with --tool-path", cause: r.cause },
    );
  }
  return {
    stdout: scrub(String(r.stdout ?? ""), run.pin?.secret),
    stderr: scrub(String(r.stderr ?? ""), run.pin?.secret),
    exitCode: r.exitCode ?? 1,
  };
}

function fromHelper(run: ToolRun, r: SpawnReply): ToolOutput {
  if (r.error !== undefined || r.exitCode === null) {
    if (run.cancelSignal?.aborted) {
      const err = new Error(`${run.tool} gave no answer in time`);
      err.name = "TimeoutError";
      throw err;
    }
    throw new CodesignError(
      "TOOL_FAILED",
      r.error === "ENOENT"
        ? `${run.tool} is not installed (${run.file} not found)`
        : `${run.tool} could not start or was stopped: ${r.error ?? r.signal ?? "unknown"}`,
      { hint: "install it (scripts/bootstrap does), or give its location with --tool-path" },
    );
  }
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
}

/** Runs the tool; a non-zero exit becomes TOOL_FAILED (exit 5) carrying the tool's last words. */
export async function runTool(run: ToolRun): Promise<ToolOutput> {
  const out = await runToolRaw(run);
  if (out.exitCode !== 0) {
    throw new CodesignError("TOOL_FAILED", `${run.tool} failed (exit ${out.exitCode}): ${lastWords(out)}`, {
      hint: `the message above is ${run.tool}'s own; run with --debug for its full output`,
      cause: new Error(`${out.stdout}\n${out.stderr}`),
    });
  }
  return out;
}

/** The last few meaningful lines a tool printed, for an error message. */
export function lastWords(out: { stdout: string; stderr: string }, lines = 4): string {
  const text = (out.stderr.trim() || out.stdout.trim()).split("\n").filter((l) => l.trim() !== "");
  return text.slice(-lines).join(" | ") || "(no output)";
}

/**
 * Caches an async lookup per key (e.g. a tool's version per --tool-path): a batch asks once, not
 * once per file. A failure is not cached.
 */
export function oncePerKey<T>(fn: (key?: string) => Promise<T>): (key?: string) => Promise<T> {
  const cache = new Map<string | undefined, Promise<T>>();
  return (key) => {
    let p = cache.get(key);
    if (!p) {
      p = fn(key);
      p.catch(() => cache.delete(key));
      cache.set(key, p);
    }
    return p;
  };
}
