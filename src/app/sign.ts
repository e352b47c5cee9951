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
import { certificatePem, readCertificates, resolveSignerCertificate } from "../core/pki/certificate.js";
import { defaultScheme, schemeFitsKey, type HashName } from "../core/signer.js";
import { hashFile } from "../core/util/hash.js";
import { withPrivateDir } from "../core/util/temp.js";
import { planOutputs, runBatch, type BatchItem, type BatchResult } from "./batch.js";
import { fileKind, UNSIGNABLE_UNDER_AUTO } from "./file-kind.js";
import type { FormatContext, TokenFormat } from "./formats/contract.js";
import type { FileDetail, FileResult, FormatName, SignOptions, SignReport } from "./options.js";

/** The format a file calls for under `auto`; a type no format here can sign properly is refused. */
export function formatFor(file: string): FormatName {
  const refused = UNSIGNABLE_UNDER_AUTO[path.extname(file).toLowerCase()];
  if (refused) {
    throw new CodesignError("USAGE", `${file} is ${refused.type}, which codesign does not sign by type`, {
      hint: refused.hint,
    });
  }
  const kind = fileKind(file);
  return kind === "authenticode" ? "osslsigncode" : kind === "jar" ? "jarsigner" : "cms";
}

/** The one format every file of the run goes through (mixed kinds need separate runs). */
function chooseFormat(files: readonly string[], o: SignOptions): FormatName {
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

async function tokenFormat(name: Exclude<FormatName, "jarsigner" | "openssl">): Promise<TokenFormat> {
  if (name === "raw") return (await import("./formats/raw.js")).raw;
  if (name === "cms") return (await import("./formats/cms.js")).cms;
  return (await import("./formats/authenticode.js")).authenticode;
}

function jobsOf(o: SignOptions): number {
  if (o.jobs === undefined) return Math.min(4, os.availableParallelism());
  if (!Number.isInteger(o.jobs) || o.jobs < 1) {
    throw new CodesignError("USAGE", `the number of parallel jobs (${o.jobs}) must be a whole number ≥ 1`, {
      hint: "give 1 or more, or leave it out for min(4, cores)",
    });
  }
  return o.jobs;
}

/** Check failures that belong to one input (missing, unreadable, too large) rather than to the run. */
const PER_FILE: ReadonlySet<string> = new Set(["INVALID_INPUT", "IO"]);

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
  const name = chooseFormat(o.files, o);
  const jobs = jobsOf(o);
  if (name === "jarsigner" || name === "openssl") {
    const { signWithTool, toolOutput } = await import("./formats/tool.js");
    const items = await plan(o, toolOutput(name, o));
    const run = await signWithTool(name, items, o, jobs);
    return report(name, run.key, 1, run.files, started);
  }
  const format = await tokenFormat(name);
  const planned = await plan(o, format.output);
  // Every input is checked before any PIN is asked for; one that is missing or unreadable becomes
  // a failed row of the report, and the others are still signed.
  const refused = new Map<BatchItem, BatchResult<FileDetail>>();
  for (const item of planned) {
    const at = performance.now();
    try {
      await format.check(item.input, o);
    } catch (e) {
      if (!isCodesignError(e) || !PER_FILE.has(e.code)) throw e; // e.g. a tool too old: the whole run
      refused.set(item, {
        ...item,
        ok: false,
        ms: Math.round(performance.now() - at),
        error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) },
      });
      o.onProgress?.(refused.size, planned.length, { input: item.input, ok: false });
    }
  }
  const items = planned.filter((item) => !refused.has(item));
  const inOrder = (signed: BatchResult<FileDetail>[]): BatchResult<FileDetail>[] => {
    const byItem = new Map(items.map((item, i) => [item, signed[i]]));
    return planned.map((item) => (refused.get(item) ?? byItem.get(item)) as BatchResult<FileDetail>);
  };
  if (items.length === 0) return report(name, { uri: o.key }, 0, inOrder([]), started);
  const hash = o.hash ?? "sha256";
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
      sessions: jobs,
    },
    async (k) => {
      const scheme = o.mechanism ?? defaultScheme(k.key.keyType);
      if (!schemeFitsKey(scheme, k.key.keyType)) {
        throw new CodesignError(
          "USAGE",
          `the ${scheme} scheme does not fit this ${k.key.keyType.toUpperCase()} key`,
          {
            hint:
              k.key.keyType === "rsa" ? "use rsa-pkcs1 or rsa-pss" : `use ${defaultScheme(k.key.keyType)}`,
          },
        );
      }
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
          digest: (file, h) => digests.get(file, h),
        };
        if (format.needsCertificate) {
          ctx.certificate = (await resolveSignerCertificate(k.key, o.cert)).der;
          ctx.chain = (await Promise.all((o.chain ?? []).map((f) => readCertificates(f)))).flat();
          const certFile = path.join(workDir, "signer.pem");
          await writeFile(certFile, certificatePem(ctx.certificate), { mode: 0o600 });
          ctx.certificateFiles = [certFile, ...(o.chain ?? [])];
        }
        const files = await runBatch<FileDetail>(
          items,
          async (item) => {
            const prepared = await format.prepare(item, ctx);
            return prepared.finish(await k.signer.sign(prepared.request));
          },
          {
            jobs: k.sessions * format.overlap,
            failFast: o.failFast === true,
            fatal: isPinError,
            onResult: (r, done) => o.onProgress?.(refused.size + done, planned.length, r),
          },
        );
        return report(name, k.key, k.sessions, inOrder(files), started);
      }, "codesign-sign-");
    },
  );
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
  const files = results.map(({ detail, ...row }): FileResult => ({ ...row, ...detail }));
  const failed = files.filter((f) => !f.ok).length;
  return {
    ok: failed === 0,
    tool,
    key: key.uri,
    ...(key.keyType === undefined ? {} : { keyType: key.keyType }),
    signed: files.length - failed,
    failed,
    sessions,
    files,
    ms: Math.round(performance.now() - started),
  };
}
