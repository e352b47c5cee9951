/**
 * `codesign sign --tool osslsigncode|jarsigner|openssl`: one login of our own checks the PIN and
 * finds the key, token and certificate; then the tool runs once per file (up to --jobs at once),
 * each result written to a temp file beside its target and renamed only when the tool succeeded.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import path from "node:path";
import { adapterFor } from "../../../adapters/index.js";
import type { SignJob, ToolName } from "../../../adapters/contract.js";
import { runBatch, type BatchItem, type BatchResult } from "../../app/batch.js";
import { certificatePem, resolveSignerCertificate } from "../../core/pki/certificate.js";
import { CodesignError } from "../../core/errors.js";
import { assertDistinct, withAtomicOutput } from "../../core/util/files.js";
import { requirePin } from "../../core/pkcs11/pin.js";
import type { HashName } from "../../core/signer.js";
import { withPrivateDir } from "../../core/util/temp.js";
import { withTokenKey } from "../../core/pkcs11/token-key.js";
import { parseUri } from "../../core/pkcs11/uri.js";
import { inputSize } from "../../core/util/files.js";
import { flag, keyAccess, list, str, timestampOptions } from "../common.js";
import { info, printJson } from "../output.js";
import { progressBar } from "../progress.js";
import { jobsOf } from "./sign.js";

/** app.exe -> app.signed.exe, beside the input. */
export function defaultSignedName(input: string): string {
  const ext = path.extname(input);
  return path.join(path.dirname(input), `${path.basename(input, ext)}.signed${ext}`);
}

type JobFor = (item: BatchItem) => Promise<SignJob>;

/** Everything the files share — PIN, key, certificate, a private dir — for the length of `fn`. */
async function withToolJobs<T>(
  args: Record<string, unknown>,
  tool: ToolName,
  fn: (jobFor: JobFor) => Promise<T>,
): Promise<T> {
  const access = keyAccess(args);
  const adapter = await adapterFor(tool);
  await adapter.version(str(args, "tool-path")); // a missing or too old tool fails before any login
  const pin = await requirePin(
    { uri: parseUri(access.key), pinFile: access.pinFile, prompt: access.prompt },
    "signing",
  );
  const { urls, failover } = timestampOptions(args);
  const chainFiles = list(args, "chain");
  return withTokenKey({ ...access, pin }, async (k) => {
    const cert = await resolveSignerCertificate(k.key, str(args, "cert"));
    return withPrivateDir(async (dir) => {
      const certFile = path.join(dir, "signer.pem");
      await writeFile(certFile, certificatePem(cert.der), { mode: 0o600 });
      const jobFor: JobFor = async (item) => ({
        input: item.input,
        output: item.output,
        keyUri: k.key.uri,
        key: k.key,
        token: k.token,
        modulePath: k.moduleChoice.path,
        pin,
        certFile,
        certOnToken: cert.source === "token",
        chainFiles,
        hash: (str(args, "hash") ?? "sha256") as HashName,
        timestamps: urls,
        failover,
        description: str(args, "description"),
        url: str(args, "url"),
        workDir: await mkdtemp(path.join(dir, "job-")),
        toolPath: str(args, "tool-path"),
        options: { mode: str(args, "mode") },
      });
      return fn(jobFor);
    }, "codesign-tool-");
  });
}

async function signFile(tool: ToolName, jobFor: JobFor, item: BatchItem) {
  const adapter = await adapterFor(tool);
  return withAtomicOutput(item.output, async (temp) => {
    const job = await jobFor({ input: item.input, output: temp });
    const outcome = await adapter.sign(job);
    if (path.resolve(item.output) === path.resolve(item.input)) await verifyBeforeReplacing(tool, job, temp);
    return outcome;
  });
}

/**
 * --in-place: the input is replaced only by a signed copy that verifies, with the signer's
 * certificate and --chain as the trust anchors.
 */
async function verifyBeforeReplacing(tool: ToolName, job: SignJob, temp: string): Promise<void> {
  const caFiles = [job.certFile, ...job.chainFiles];
  try {
    if (tool === "osslsigncode") {
      const { verifyAuthenticode } = await import("../../../adapters/osslsigncode.js");
      await verifyAuthenticode(temp, { caFiles, toolPath: job.toolPath });
    } else if (tool === "jarsigner") {
      const { verifyJar } = await import("../../../adapters/jarsigner.js");
      await verifyJar(temp, { caFiles, toolPath: job.toolPath });
    }
  } catch (cause) {
    throw new CodesignError(
      "VERIFY_FAILED",
      `the signed copy of ${job.input} did not verify, so the input was left untouched`,
      { hint: "give the issuing CA with --chain, or write a copy with --out / --out-dir", cause },
    );
  }
}

export async function run(args: Record<string, unknown>, tool: string): Promise<void> {
  const input = str(args, "in") as string;
  const inPlace = flag(args, "in-place");
  if (inPlace && tool === "openssl") {
    throw new CodesignError(
      "USAGE",
      "--in-place does not apply to --tool openssl: it writes a detached signature",
      {
        hint: "drop --in-place; the signature goes to --out",
      },
    );
  }
  const output = inPlace ? input : (str(args, "out") ?? defaultSignedName(input));
  if (!inPlace) assertDistinct(input, output);
  await inputSize(input);
  const started = performance.now();
  const outcome = await withToolJobs(args, tool as ToolName, (jobFor) =>
    signFile(tool as ToolName, jobFor, { input, output }),
  );
  const report = { input, output, ...outcome, ms: Math.round(performance.now() - started) };
  if (flag(args, "json")) printJson(report);
  else
    info(
      `signed ${input} with ${outcome.tool} ${outcome.version}${outcome.timestampUrl ? `, timestamped by ${outcome.timestampUrl}` : ""} -> ${output}`,
    );
}

/** Many files, one login of ours; up to --jobs tool processes at once. */
export async function signBatch(
  args: Record<string, unknown>,
  items: BatchItem[],
  tool: string,
): Promise<BatchResult<unknown>[]> {
  for (const item of items) await inputSize(item.input);
  return withToolJobs(args, tool as ToolName, (jobFor) =>
    runBatch(items, (item) => signFile(tool as ToolName, jobFor, item), {
      jobs: jobsOf(args),
      failFast: flag(args, "fail-fast"),
      onResult: progressBar(items.length, args),
    }),
  );
}
