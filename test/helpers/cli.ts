import { execa, type Options } from "execa";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = path.join(ROOT, "bin", "codesign.js");

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI as a user would: a real process, no shell, stdin not a TTY. */
export async function codesign(
  args: string[],
  opts: Options = {},
  nodeArgs: string[] = [],
): Promise<CliResult> {
  const r = await execa("node", [...nodeArgs, BIN, ...args], {
    reject: false,
    stdin: "ignore",
    ...opts,
    env: { NO_COLOR: "1", ...(opts.env ?? {}) },
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Runs an independent tool (openssl, pkcs11-tool...) and fails loudly when it fails. */
export async function tool(file: string, args: string[], opts: Options = {}): Promise<CliResult> {
  const r = await execa(file, args, { reject: false, stdin: "ignore", ...opts });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
