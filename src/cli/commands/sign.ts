/** `codesign sign`: the command line turned into SignOptions once, `sign()` run, the report printed. */
import { readFile } from "node:fs/promises";
import type { ToolChoice } from "../../app/options.js";
import { sign } from "../../app/sign.js";
import { CodesignError } from "../../core/errors.js";
import type { HashName, SignatureFormat, SignatureScheme } from "../../core/signer.js";
import { flag, list, str, timestampOptions } from "../common.js";
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

function jobs(args: Record<string, unknown>): number | undefined {
  const raw = args["jobs"];
  const j = Array.isArray(raw) ? raw.at(-1) : raw;
  return typeof j === "number" ? j : undefined;
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
  const mode = str(args, "mode");
  const report = await sign({
    files,
    key,
    module: str(args, "module"),
    moduleArgs: str(args, "module-args"),
    pinFile: str(args, "pin-file"),
    promptPin: () => promptPin(),
    tool: str(args, "tool") as ToolChoice | undefined,
    out: str(args, "out"),
    outDir: str(args, "out-dir"),
    inPlace: flag(args, "in-place"),
    jobs: jobs(args),
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
    },
    attached: flag(args, "attached"),
    encoding: str(args, "format") === "pem" ? "pem" : "der",
    signedAttributes: args["signed-attributes"] !== false,
    description: str(args, "description"),
    url: str(args, "url"),
    opensslMode: mode === "cms" ? "cms" : "dgst",
    toolPath: str(args, "tool-path"),
    onProgress: progressBar(files.length, args),
  });
  if (flag(args, "json")) printJson(report);
  else {
    for (const f of report.files) {
      if (f.ok) {
        const ts = f.timestamp ? `, timestamped by ${f.timestamp.url}` : "";
        if (report.files.length === 1)
          info(`signed ${f.input} with ${report.key} (${report.tool}${ts}) -> ${f.output}`);
      } else info(`failed: ${f.input}: ${f.error?.message ?? "unknown error"}`);
    }
    if (report.files.length > 1) info(`signed ${report.signed} of ${report.files.length} files`);
  }
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
