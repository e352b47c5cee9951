/**
 * `sign(options)`: every signature goes the same way. The files are planned (outputs, collisions)
 * and checked before any PIN is asked for; the token is opened once, with one login and a pool of
 * sessions; then each file goes through its format's three steps — prepare what must be signed,
 * the one token signer signs it, finish the output atomically. A single file is a batch of one.
 */
import { mkdir, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CodesignError, isCodesignError } from "../core/errors.js";
import { withTokenKey } from "../core/pkcs11/token-key.js";
import { schemeForKey, type HashName } from "../core/signer.js";
import { DeferredSync } from "../core/util/files.js";
import { hashFile } from "../core/util/hash.js";
import { timestampScheduler } from "../core/util/scheduler.js";
import { withPrivateDir } from "../core/util/temp.js";
import { planOutputs, runBatch, type BatchItem, type BatchResult } from "./batch.js";
import { fileKind, UNSIGNABLE_UNDER_AUTO } from "./file-kind.js";
import type { FormatContext, TokenFormat } from "./formats/contract.js";
import {
  isLoginTool,
  type FileDetail,
  type FileResult,
  type FormatName,
  type LoginToolName,
  type SignOptions,
  type SignReport,
} from "./options.js";

/** The format a file calls for under `auto`; a type no format here can sign properly is refused. */
export function formatFor(file: string): FormatName {
  const refused = UNSIGNABLE_UNDER_AUTO[path.extname(file).toLowerCase()];
  if (refused) {
    throw new CodesignError("USAGE", `${file} is ${refused.type}, which codesign does not sign by type`, {
      hint: refused.hint,
    });
  }
  const kind = fileKind(file);
  if (kind === "authenticode") return "osslsigncode";
  if (kind === "jar") return "jar"; // in-process; jarsigner stays a choice (--tool jarsigner)
  if (kind === "apk") return "apksigner";
  return "cms";
}

/** The one format every file of the run goes through (mixed kinds need separate runs). */
export function chooseFormat(files: readonly string[], o: SignOptions): FormatName {
  if (o.tool !== undefined && o.tool !== "auto") return o.tool;
  const names = new Set(files.map(formatFor));
  const [name] = names;
  if (names.size > 1 || !name) {
    throw new CodesignError("USAGE", `these files call for different formats (${[...names].join(", ")})`, {
      hint: "sign each kind of file in its own run, or choose one format for all",
    });
  }
  return name;
}

/** Choices only Authenticode has; any other format refuses them rather than ignoring them. */
export function refuseAuthenticodeOnly(name: FormatName, o: SignOptions): void {
  if (name === "osslsigncode") return;
  const given = [
    ...(o.nest ? ["nesting"] : []),
    ...(o.replace ? ["replacing signatures"] : []),
    ...(o.skipSigned ? ["skipping signed files"] : []),
    ...(o.detachedSignature ? ["a detached Authenticode signature"] : []),
  ];
  if (given.length > 0) {
    throw new CodesignError("USAGE", `${given.join(", ")} applies to Authenticode files, not to ${name}`, {
      hint: "sign Authenticode files (.exe .dll .msi .ps1 …) in their own run",
    });
  }
}

export async function tokenFormat(
  name: Exclude<FormatName, LoginToolName>,
  o: SignOptions,
): Promise<TokenFormat> {
  if (name === "raw") return (await import("./formats/raw.js")).raw;
  if (name === "cms") return (await import("./formats/cms.js")).cms;
  if (name === "jar") return (await import("./formats/jar.js")).jar;
  const a = await import("./formats/authenticode.js");
  return o.detachedSignature ? a.authenticodeDetached : a.authenticode;
}

/** Inputs the format leaves as they are (e.g. already signed), and why; asked before any login. */
export async function skippedInputs(format: TokenFormat, items: readonly BatchItem[], o: SignOptions) {
  const skipped = new Map<string, string>();
  if (!format.skip) return skipped;
  for (const item of items) {
    const reason = await format.skip(item.input, o);
    if (reason !== undefined) skipped.set(item.input, reason);
  }
  return skipped;
}

/** `--jobs`: a number, or "auto" (the default), which the token side settles (token-key.ts). */
function jobsOf(o: SignOptions): number | "auto" {
  if (o.jobs === undefined || o.jobs === "auto") return "auto";
  if (!Number.isInteger(o.jobs) || o.jobs < 1) {
    throw new CodesignError("USAGE", `the number of parallel jobs (${o.jobs}) must be a whole number ≥ 1`, {
      hint: "give 1 or more, or auto (the default)",
    });
  }
  return o.jobs;
}

/** Work off the token (checks, tools, early hashing) under "auto": min(4, cores). */
const widthOf = (jobs: number | "auto"): number =>
  jobs === "auto" ? Math.min(4, os.availableParallelism()) : jobs;

/** Check failures that belong to one input (missing, unreadable, too large) rather than to the run. */
const PER_FILE: ReadonlySet<string> = new Set(["INVALID_INPUT", "IO"]);

/**
 * Checks every input before any PIN is asked for, several at once (a check may run a tool). A
 * failure that belongs to one input becomes that input's failed row, and the others are still
 * signed; any other failure (a tool too old, a signed file with no choice made) stops the run.
 */
async function checkInputs(
  items: readonly BatchItem[],
  check: (input: string) => Promise<void>,
  concurrency: number,
  onRefused: (done: number, item: BatchItem) => void,
): Promise<Map<BatchItem, BatchResult<FileDetail>>> {
  const refused = new Map<BatchItem, BatchResult<FileDetail>>();
  const fatal: unknown[] = new Array(items.length);
  let next = 0;
  let stop = false;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length && !stop; i = next++) {
      const item = items[i] as BatchItem;
      const at = performance.now();
      try {
        await check(item.input);
      } catch (e) {
        if (!isCodesignError(e) || !PER_FILE.has(e.code)) {
          fatal[i] = e;
          stop = true;
          continue;
        }
        refused.set(item, {
          ...item,
          ok: false,
          ms: Math.round(performance.now() - at),
          error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) },
        });
        onRefused(refused.size, item);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  const first = fatal.find((e) => e !== undefined);
  if (first !== undefined) throw first;
  return refused;
}

/** Errors after which no further file is tried: every failed login counts towards a lock-out. */
const isPinError = (e: unknown): boolean =>
  isCodesignError(e) && ["PIN_INCORRECT", "PIN_LOCKED", "PIN_EXPIRED", "LOGIN_FAILED"].includes(e.code);

/** Digests of whole files, some started before the token is open so hashing hides its start-up. */
class Digests {
  private readonly started = new Map<string, Promise<Uint8Array>>();

  start(file: string, hash: HashName): void {
    const p = hashFile(file, hash);
    p.catch(() => undefined); // reported when awaited; never an unhandled rejection
    this.started.set(`${hash}:${path.resolve(file)}`, p);
  }

  get(file: string, hash: HashName): Promise<Uint8Array> {
    const key = `${hash}:${path.resolve(file)}`;
    const early = this.started.get(key);
    if (!early) return hashFile(file, hash);
    this.started.delete(key);
    return early;
  }
}

export async function sign(o: SignOptions): Promise<SignReport> {
  const started = performance.now();
  if (!o.key) {
    throw new CodesignError("USAGE", "no key was named", {
      hint: "give the key's RFC 7512 URI (`codesign keys` lists them), or a profile that names one",
    });
  }
  if (o.dryRun) {
    throw new CodesignError("USAGE", "sign() was asked for a dry run", {
      hint: "call dryRun(options) from src/app/plan.ts: it checks everything and signs nothing",
    });
  }
  const name = chooseFormat(o.files, o);
  refuseAuthenticodeOnly(name, o);
  const requested = jobsOf(o);
  const jobs = widthOf(requested);
  if (isLoginTool(name)) {
    const { signWithTool, toolOutput } = await import("./formats/tool.js");
    const items = await plan(o, toolOutput(name, o));
    const run = await signWithTool(name, items, o, jobs);
    return report(name, run.key, 1, run.files, started);
  }
  const format = await tokenFormat(name, o);
  const planned = await plan(o, format.output);
  const refused = await checkInputs(
    planned,
    (input) => format.check(input, o),
    jobs * format.overlap,
    (n, item) => o.onProgress?.(n, planned.length, { input: item.input, ok: false }),
  );
  const items = planned.filter((item) => !refused.has(item));
  // The report lists every input in the order given: refused ones among the signed.
  const inOrder = (signed: BatchResult<FileDetail>[]): BatchResult<FileDetail>[] => {
    const byItem = new Map(items.map((item, i) => [item, signed[i]]));
    return planned.map((item) => (refused.get(item) ?? byItem.get(item)) as BatchResult<FileDetail>);
  };
  const skipped = await skippedInputs(format, items, o);
  if (skipped.size === items.length) {
    // Nothing to sign: no PIN asked for, the token not touched.
    const rows = items.map((item) => ({ ...item, ok: true, ms: 0, detail: skipRow(skipped, item) ?? {} }));
    return report(name, { uri: o.key }, 0, inOrder(rows), started);
  }
  const hash = o.hash ?? "sha256";
  // One scheduler for the run's timestamp requests; files awaiting a timestamp hold no session.
  const timestamps = timestampScheduler(o.timestamp);
  const outputs = new DeferredSync();
  const digests = new Digests();
  const early = format.fileDigest(o);
  if (early) for (const item of items.slice(0, jobs * format.overlap)) digests.start(item.input, early);
  return withTokenKey(
    {
      key: o.key,
      module: o.module,
      moduleArgs: o.moduleArgs,
      pinFile: o.pinFile,
      prompt: o.promptPin,
      sessions: requested,
      tokenRetrySeconds: o.tokenRetrySeconds,
    },
    async (k) => {
      const scheme = schemeForKey(k.key.keyType, o.mechanism);
      return withPrivateDir(async (workDir) => {
        const ctx: FormatContext = {
          options: o,
          key: k.key,
          hash,
          scheme,
          certificate: undefined,
          chain: [],
          certificateFiles: [],
          workDir,
          outputs,
          digest: (file, h) => digests.get(file, h),
          timestamps,
        };
        if (format.needsCertificate) {
          // Loaded only here: raw signatures never load pkijs (about 100 ms of start-up).
          const { certificatePem, readCertificates, resolveSignerCertificate } =
            await import("../core/pki/certificate.js");
          ctx.certificate = (await resolveSignerCertificate(k.key, o.cert)).der;
          ctx.chain = (await Promise.all((o.chain ?? []).map((f) => readCertificates(f)))).flat();
          const certFile = path.join(workDir, "signer.pem");
          await writeFile(certFile, certificatePem(ctx.certificate), { mode: 0o600 });
          ctx.certificateFiles = [certFile, ...(o.chain ?? [])];
        }
        const files = await runBatch<FileDetail>(
          items,
          async (item) => {
            const skip = skipRow(skipped, item);
            if (skip) return skip;
            const prepared = await format.prepare(item, ctx);
            return prepared.finish(await k.signer.sign(prepared.request));
          },
          {
            // Files waiting for a timestamp get slots of their own: the token keeps signing.
            jobs: k.sessions * format.overlap + (timestamps?.jobs ?? 0),
            failFast: o.failFast === true,
            fatal: isPinError,
            onResult: (r, done) => o.onProgress?.(refused.size + done, planned.length, r),
          },
        );
        await outputs.flush();
        const { mode, roundTripMs } = k.jobs;
        const jobsReport = { requested, settled: k.jobs.settled, mode, roundTripMs };
        const r = { ...report(name, k.key, k.sessions, inOrder(files), started), jobs: jobsReport };
        return timestamps ? { ...r, timestampStats: timestamps.stats() } : r;
      }, "codesign-sign-");
    },
  );
}

/** The report row of a file the run leaves as it is: nothing is written. */
function skipRow(skipped: ReadonlyMap<string, string>, item: BatchItem): FileDetail | undefined {
  const reason = skipped.get(item.input);
  return reason === undefined ? undefined : { skipped: true, reason };
}

/** Outputs for every input, planned before anything is signed; the output directory made. */
async function plan(o: SignOptions, style: Parameters<typeof planOutputs>[1]["style"]): Promise<BatchItem[]> {
  const items = planOutputs(o.files, { style, out: o.out, outDir: o.outDir, inPlace: o.inPlace });
  if (o.out !== undefined) {
    // Found now, not after a login and a signature that could not be written.
    const dir = path.dirname(path.resolve(o.out));
    const isDir = await stat(dir).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDir) {
      throw new CodesignError("USAGE", `the output ${o.out} cannot be written: ${dir} is not a directory`, {
        hint: `create ${dir} first, or name an output in an existing directory`,
      });
    }
  }
  if (o.outDir !== undefined) {
    const dir = o.outDir;
    await mkdir(dir, { recursive: true }).catch((cause: NodeJS.ErrnoException) => {
      throw new CodesignError("IO", `cannot create the output directory ${dir}: ${cause.code}`, { cause });
    });
  }
  return items;
}

function report(
  tool: FormatName,
  key: { uri: string; keyType?: string },
  sessions: number,
  results: BatchResult<FileDetail>[],
  started: number,
): SignReport {
  // A skipped file's result is the input itself, as it was: nothing was written for it.
  const files = results.map(({ detail, ...row }): FileResult => ({
    ...row,
    ...detail,
    ...(detail?.skipped ? { output: row.input } : {}),
  }));
  const failed = files.filter((f) => !f.ok).length;
  const skipped = files.filter((f) => f.ok && f.skipped === true).length;
  return {
    ok: failed === 0,
    tool,
    key: key.uri,
    ...(key.keyType === undefined ? {} : { keyType: key.keyType }),
    signed: files.length - failed - skipped,
    failed,
    skipped,
    sessions,
    files,
    ms: Math.round(performance.now() - started),
  };
}
