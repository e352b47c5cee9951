import { mkdir, readFile } from "node:fs/promises";
import os from "node:os";
import { planOutputs, runBatch, type BatchItem, type BatchResult } from "../../app/batch.js";
import { CodesignError } from "../../core/errors.js";
import { assertDistinct, writeFileAtomic } from "../../core/util/files.js";
import { fileKind } from "../../app/file-kind.js";
import { hashFile } from "../../core/util/hash.js";
import {
  defaultScheme,
  type HashName,
  type SignatureFormat,
  type SignatureScheme,
  type Signer,
} from "../../core/signer.js";
import { withTokenKey } from "../../core/pkcs11/token-key.js";
import { inputSize } from "../../core/util/files.js";
import { flag, keyAccess, str } from "../common.js";
import { info, printJson } from "../output.js";
import { progressBar } from "../progress.js";

/** EdDSA (PureEdDSA) signs the whole message in one call, so the file must fit in memory. */
const EDDSA_MAX_BYTES = 256 * 1024 * 1024;

export type SignTool = "raw" | "cms" | "osslsigncode" | "jarsigner" | "openssl";

/** --tool auto: the format the file calls for. */
export function toolFor(input: string, requested: string | undefined): SignTool {
  if (requested && requested !== "auto") return requested as SignTool;
  const kind = fileKind(input);
  return kind === "authenticode" ? "osslsigncode" : kind === "jar" ? "jarsigner" : "cms";
}

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
        {
          hint: "give a file with one path per line, or - for stdin",
          cause,
        },
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

/** The one tool a set of files calls for (mixed kinds need separate runs). */
function toolForAll(files: string[], requested: string | undefined): SignTool {
  const tools = new Set(files.map((f) => toolFor(f, requested)));
  const [tool] = tools;
  if (tools.size > 1 || !tool) {
    throw new CodesignError("USAGE", `these files call for different tools (${[...tools].join(", ")})`, {
      hint: "sign each kind in its own run, or choose one with --tool",
    });
  }
  return tool;
}

export async function run(args: Record<string, unknown>): Promise<void> {
  const files = await inputFiles(args);
  const batch = files.length > 1 || str(args, "out-dir") !== undefined;
  if (!batch) {
    requireKey(args);
    args["in"] = files[0];
    const tool = toolForAll(files, str(args, "tool"));
    if (tool === "raw") return signRawOne(args);
    if (tool === "cms") return (await import("./sign-cms.js")).run(args);
    return (await import("./sign-tool.js")).run(args, tool);
  }
  if (str(args, "out") !== undefined) {
    throw new CodesignError("USAGE", "--out names one output; with several files use --out-dir", {
      hint: "drop --out, or sign one file",
    });
  }
  await reportBatch(args, await signMany(args, files));
}

function requireKey(args: Record<string, unknown>): void {
  if (str(args, "key") === undefined) {
    throw new CodesignError("USAGE", "--key is required", {
      hint: "give the key's URI (see `codesign keys`), or a --profile that names one",
    });
  }
}

/**
 * Signs every file and returns one result per file, printing nothing: the batch behind
 * `codesign sign FILE…` and the GitHub Action. Outputs are planned (collisions refused) first.
 */
export async function signMany(
  args: Record<string, unknown>,
  files: string[],
): Promise<BatchResult<unknown>[]> {
  requireKey(args);
  const tool = toolForAll(files, str(args, "tool"));
  const outDir = str(args, "out-dir");
  const items = planOutputs(files, {
    style:
      tool === "raw"
        ? { kind: "detached", suffix: ".sig" }
        : tool === "cms"
          ? { kind: "detached", suffix: ".p7s" }
          : { kind: "embedded" },
    outDir,
    inPlace: flag(args, "in-place"),
  });
  if (outDir !== undefined) {
    await mkdir(outDir, { recursive: true }).catch((cause: NodeJS.ErrnoException) => {
      throw new CodesignError("IO", `cannot create --out-dir ${outDir}: ${cause.code}`, { cause });
    });
  }
  if (tool === "raw") return signRawBatch(args, items);
  // One login for the whole batch in every format.
  if (tool === "cms") return (await import("./sign-cms.js")).signBatch(args, items);
  return (await import("./sign-tool.js")).signBatch(args, items, tool);
}

interface RawOptions {
  hash: HashName;
  format: SignatureFormat;
  mechanism: SignatureScheme | undefined;
}

function rawOptions(args: Record<string, unknown>): RawOptions {
  return {
    hash: (str(args, "hash") ?? "sha256") as HashName,
    format: (str(args, "signature-format") ?? "der") as SignatureFormat,
    mechanism: str(args, "mechanism") as SignatureScheme | undefined,
  };
}

/** One raw signature: the file hashed on the host (EdDSA: the whole file) and signed on the token. */
async function signRawFile(
  signer: Signer,
  item: BatchItem,
  size: number,
  o: RawOptions,
  early?: Promise<Uint8Array>,
) {
  const scheme = o.mechanism ?? defaultScheme(signer.key.keyType);
  let signature: Uint8Array;
  if (scheme === "eddsa") {
    if (size > EDDSA_MAX_BYTES) {
      throw new CodesignError(
        "INVALID_INPUT",
        `EdDSA signs the whole file in one call; ${item.input} is over 256 MiB`,
        {
          hint: "use an RSA or EC key for large files",
        },
      );
    }
    signature = await signer.sign({ hash: o.hash, scheme, input: { message: await readFile(item.input) } });
  } else {
    const digest = await (early ?? hashFile(item.input, o.hash));
    signature = await signer.sign({ hash: o.hash, scheme, input: { digest }, format: o.format });
  }
  await writeFileAtomic(item.output, signature);
  return {
    scheme,
    hash: scheme === "eddsa" ? undefined : o.hash,
    format: scheme === "ecdsa" ? o.format : undefined,
    bytes: signature.length,
  };
}

async function signRawOne(args: Record<string, unknown>): Promise<void> {
  const input = str(args, "in") as string;
  const output = str(args, "out") ?? `${input}.sig`;
  assertDistinct(input, output);
  const o = rawOptions(args);
  const size = await inputSize(input);
  const started = performance.now();
  // Hash while the module loads and logs in: for a large file that hides the token's start-up.
  const early = o.mechanism === "eddsa" ? undefined : hashFile(input, o.hash);
  early?.catch(() => undefined); // reported when awaited; never an unhandled rejection
  const report = await withTokenKey(keyAccess(args), async ({ signer, key }) => ({
    input,
    output,
    key: key.uri,
    keyType: key.keyType,
    ...(await signRawFile(signer, { input, output }, size, o, key.keyType === "eddsa" ? undefined : early)),
    ms: Math.round(performance.now() - started),
  }));
  if (flag(args, "json")) printJson(report);
  else
    info(
      `signed ${input} with ${report.key} (${report.scheme}${report.hash ? `, ${report.hash}` : ""}) -> ${output}`,
    );
}

export function jobsOf(args: Record<string, unknown>): number {
  const raw = args["jobs"];
  const j = Array.isArray(raw) ? raw.at(-1) : raw;
  if (typeof j === "number") {
    if (!Number.isInteger(j) || j < 1)
      throw new CodesignError("USAGE", `--jobs ${j} must be a whole number ≥ 1`);
    return j;
  }
  return Math.min(4, os.availableParallelism());
}

/** Many raw signatures: one module load, one login, --jobs sessions signing in parallel. */
async function signRawBatch(
  args: Record<string, unknown>,
  items: BatchItem[],
): Promise<BatchResult<unknown>[]> {
  const sizes = new Map(
    await Promise.all(items.map(async ({ input }) => [input, await inputSize(input)] as const)),
  );
  const o = rawOptions(args);
  const jobs = jobsOf(args);
  return withTokenKey({ ...keyAccess(args), sessions: jobs }, ({ signer }) =>
    runBatch(items, (item) => signRawFile(signer, item, sizes.get(item.input) ?? 0, o), {
      // More files in flight than sessions: reading and writing the next files overlaps signing.
      jobs: jobs * 4,
      failFast: flag(args, "fail-fast"),
      onResult: progressBar(items.length, args),
    }),
  );
}

/** Prints the batch report; throws (non-zero exit) when any file failed. */
async function reportBatch(args: Record<string, unknown>, results: BatchResult<unknown>[]): Promise<void> {
  const failed = results.filter((r) => !r.ok);
  if (flag(args, "json")) {
    printJson({
      ok: failed.length === 0,
      signed: results.length - failed.length,
      failed: failed.length,
      files: results.map((r) => ({
        input: r.input,
        output: r.output,
        ok: r.ok,
        ...(r.error ? { error: r.error } : {}),
        ms: r.ms,
      })),
    });
  } else {
    for (const r of failed) info(`failed: ${r.input}: ${r.error?.message ?? "unknown error"}`);
    info(`signed ${results.length - failed.length} of ${results.length} files`);
  }
  const first = failed[0]?.error;
  if (first) {
    throw new CodesignError(
      first.code === "UNEXPECTED" ? "INTERNAL" : first.code,
      `${failed.length} of ${results.length} files failed; the first: ${failed[0]?.input}: ${first.message}`,
      { hint: "the files listed as signed are complete and valid; fix the cause and sign the rest again" },
    );
  }
}
