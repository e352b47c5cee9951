/** `codesign sign`: the command line turned into SignOptions once, `sign()` run, the report printed. */
import { readFile } from "node:fs/promises";
import type { SignOptions, SignReport, ToolChoice } from "../../app/options.js";
import type { DryRunReport } from "../../app/plan.js";
import { sign } from "../../app/sign.js";
import { CodesignError } from "../../core/errors.js";
import type { HashName, SignatureFormat, SignatureScheme } from "../../core/signer.js";
import { flag, list, str, timestampLimits, timestampOptions } from "../common.js";
import { info, printJson } from "../output.js";
import { progressBar } from "../progress.js";
import { promptPin } from "../prompt.js";

/** The files named by --in, the positional arguments and --files-from, in that order. */
async function inputFiles(args: Record<string, unknown>): Promise<string[]> {
  const files: string[] = [];
  const one = str(args, "in");
  if (one !== undefined) files.push(one);
  const positional = args["files"];
  if (Array.isArray(positional)) files.push(...positional.map(String));
  const from = str(args, "files-from");
  if (from !== undefined) {
    let text: string;
    try {
      text = from === "-" ? await readStdin() : await readFile(from, "utf8");
    } catch (cause) {
      throw new CodesignError(
        "INVALID_INPUT",
        `cannot read --files-from ${from}: ${(cause as NodeJS.ErrnoException).code}`,
        { hint: "give a file with one path per line, or - for stdin", cause },
      );
    }
    files.push(...text.split(/\r?\n/).filter((l) => l.trim() !== ""));
  }
  if (files.length === 0) {
    throw new CodesignError("USAGE", "no file to sign", {
      hint: "name files, or use --in FILE or --files-from LIST",
    });
  }
  return files;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** --jobs N or auto (a profile gives a number); anything else is a usage error. */
function jobs(args: Record<string, unknown>): number | "auto" | undefined {
  const raw = args["jobs"];
  const j: unknown = Array.isArray(raw) ? raw.at(-1) : raw;
  if (j === undefined || typeof j === "number") return j;
  const text = String(j).trim();
  if (text === "auto") return "auto";
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new CodesignError("USAGE", `--jobs ${text}: give a whole number ≥ 1, or auto`, {
      hint: "auto (the default) picks it from the token's session limit and round trip",
    });
  }
  return Number(text);
}

function lastNumber(args: Record<string, unknown>, name: string): number | undefined {
  const raw = args[name];
  const v = Array.isArray(raw) ? raw.at(-1) : raw;
  return typeof v === "number" ? v : undefined;
}

export async function run(args: Record<string, unknown>): Promise<void> {
  const files = await inputFiles(args);
  const key = str(args, "key");
  if (key === undefined) {
    throw new CodesignError("USAGE", "--key is required", {
      hint: "give the key's URI (see `codesign keys`), or a --profile that names one",
    });
  }
  const { urls, failover } = timestampOptions(args);
  const limits = timestampLimits(args);
  const mode = str(args, "mode");
  // `--detached-signature F` names the one output; bare, outputs are <name>.p7 (or in --out-dir).
  const detached = str(args, "detached-signature");
  if (detached !== undefined && detached !== "" && str(args, "out") !== undefined) {
    throw new CodesignError("USAGE", "--detached-signature F already names the output; --out says it again", {
      hint: "give the signature's path once, with --detached-signature F",
    });
  }
  const options: SignOptions = {
    files,
    key,
    module: str(args, "module"),
    moduleArgs: str(args, "module-args"),
    pinFile: str(args, "pin-file"),
    promptPin: () => promptPin(),
    tool: str(args, "tool") as ToolChoice | undefined,
    out: detached ? detached : str(args, "out"),
    outDir: str(args, "out-dir"),
    inPlace: flag(args, "in-place"),
    jobs: jobs(args),
    tokenRetrySeconds: lastNumber(args, "token-retry-seconds"),
    failFast: flag(args, "fail-fast"),
    hash: str(args, "hash") as HashName | undefined,
    mechanism: str(args, "mechanism") as SignatureScheme | undefined,
    signatureFormat: str(args, "signature-format") as SignatureFormat | undefined,
    cert: str(args, "cert"),
    chain: list(args, "chain"),
    timestamp: {
      urls,
      retries: failover.retries,
      timeoutSeconds: (failover.timeoutMs ?? 10_000) / 1000,
      onFailure: failover.onFailure,
      tsaCa: list(args, "tsa-ca"),
      allowUntrustedTsa: flag(args, "allow-untrusted-tsa"),
      ...limits,
    },
    attached: flag(args, "attached"),
    encoding: str(args, "format") === "pem" ? "pem" : "der",
    signedAttributes: args["signed-attributes"] !== false,
    description: str(args, "description"),
    url: str(args, "url"),
    opensslMode: mode === "cms" ? "cms" : "dgst",
    toolPath: str(args, "tool-path"),
    nest: flag(args, "nest"),
    replace: flag(args, "replace"),
    skipSigned: flag(args, "skip-signed"),
    detachedSignature: detached !== undefined,
    login: flag(args, "login"),
  };
  if (flag(args, "dry-run")) return runDry(options, args);
  if (flag(args, "login")) {
    throw new CodesignError("USAGE", "--login belongs to --dry-run (signing always logs in)", {
      hint: "add --dry-run, or leave --login out",
    });
  }
  const report = await sign({ ...options, onProgress: progressBar(files.length, args) });
  if (flag(args, "json")) printJson(report);
  else printReport(report);
  const failed = report.files.filter((f) => !f.ok);
  const first = failed[0]?.error;
  if (!first) return;
  if (report.files.length === 1) {
    // One file: its own error, with its own exit code and hint.
    throw new CodesignError(first.code === "UNEXPECTED" ? "INTERNAL" : first.code, first.message, {
      ...(first.hint ? { hint: first.hint } : {}),
    });
  }
  throw new CodesignError(
    first.code === "UNEXPECTED" ? "INTERNAL" : first.code,
    `${failed.length} of ${report.files.length} files failed; the first: ${failed[0]?.input}: ${first.message}`,
    { hint: "the files listed as signed are complete and valid; fix the cause and sign the rest again" },
  );
}

function printReport(report: SignReport): void {
  for (const f of report.files) {
    if (f.skipped) info(`skipped ${f.input}: ${f.reason ?? "left as it is"}`);
    else if (f.ok) {
      const ts = f.timestamp ? `, timestamped by ${f.timestamp.url}` : "";
      const how = f.nested
        ? `, nested as signature ${f.nested.sequence + 1}`
        : f.replaced
          ? ", replacing the existing signatures"
          : "";
      const what = f.detached ? `, detached: ${f.input} is unchanged` : "";
      if (report.files.length === 1)
        info(`signed ${f.input} with ${report.key} (${report.tool}${ts}${how}${what}) -> ${f.output}`);
    } else info(`failed: ${f.input}: ${f.error?.message ?? "unknown error"}`);
  }
  const skipped = report.skipped > 0 ? `, skipped ${report.skipped} already signed` : "";
  if (report.files.length > 1) info(`signed ${report.signed} of ${report.files.length} files${skipped}`);
}

/** `--dry-run`: the plan printed (or --json), then the first problem as the exit code. */
async function runDry(options: SignOptions, args: Record<string, unknown>): Promise<void> {
  const { dryRun } = await import("../../app/plan.js");
  const plan = await dryRun(options);
  if (flag(args, "json")) printJson(plan);
  else printPlan(plan);
  // In the order a run would meet them: the files first, then the token, the chain, the TSAs.
  const first = plan.files.find((f) => f.problem)?.problem ?? plan.problems[0];
  if (!first) return;
  const count = plan.problems.length + plan.files.filter((f) => f.problem).length;
  throw new CodesignError(
    first.code === "UNEXPECTED" ? "INTERNAL" : first.code,
    count > 1 ? `dry run: ${count} problems; the first: ${first.message}` : `dry run: ${first.message}`,
    { ...(first.hint ? { hint: first.hint } : {}) },
  );
}

function printPlan(p: DryRunReport): void {
  info(`dry run: nothing is signed or written`);
  for (const f of p.files) {
    if (f.problem) info(`  ${f.input}: ${f.problem.message}`);
    else if (f.skipped) info(`  ${f.input} -> skipped (${f.reason ?? "left as it is"})`);
    else info(`  ${f.input} -> ${f.format} -> ${f.output}`);
  }
  const k = p.key;
  const what = k.keyType
    ? ` (${k.keyType.toUpperCase()}${k.bits ? ` ${k.bits}` : k.curve ? ` ${k.curve}` : ""})`
    : "";
  const seen = {
    "private-key": "found",
    "public-objects": "its public key found (the private key shows only after a login)",
    unchecked: "not checked without --login",
    "not-found": "not found",
  }[k.seen];
  info(`key: ${k.uri}${what}: ${seen}${p.loggedIn ? ", logged in" : ", no login"}`);
  if (p.token) info(`token: ${p.token.label} (serial ${p.token.serial}) via ${p.token.module}`);
  if (p.scheme) info(`scheme: ${p.scheme} with ${p.hash}`);
  if (p.certificate) {
    const c = p.certificate;
    const match =
      c.matchesKey === "unchecked"
        ? "not compared with the key"
        : c.matchesKey
          ? "matches the key"
          : "NOT the key's";
    info(
      `certificate (${c.source}): ${c.subject}, expires ${c.notAfter}, ${match}, codeSigning: ${c.codeSigning}`,
    );
  }
  for (const c of p.chain) info(`chain: ${c.file}: ${c.certificates} certificate(s)`);
  for (const t of p.timestamps)
    info(`timestamp: ${t.url}: ${t.ok ? `answered in ${t.ms} ms` : `failed: ${t.error ?? ""}`}`);
  for (const n of p.notes) info(`note: ${n}`);
  for (const pr of p.problems) info(`problem: ${pr.message}`);
  info(p.ok ? "dry run: ready to sign" : "dry run: not ready");
}
