/**
 * The explicit exception to "only the core touches the token": jarsigner (SunPKCS11) and openssl
 * (libp11) log in themselves. codesign logs in once first — to prove the PIN before any tool can
 * spend a try on it, find the key and export the certificate — then runs the tool per file, each
 * result written to a temp file beside its target and renamed only when the tool succeeded.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import path from "node:path";
import type { SignJob } from "../../../adapters/contract.js";
import { signingAdapter } from "../../../adapters/index.js";
import { verifyApk } from "../../../adapters/apksigner.js";
import { jarsignerPinProblem, sunpkcs11Alias, verifyJar } from "../../../adapters/jarsigner.js";
import { opensslPinProblem } from "../../../adapters/openssl.js";
import { CodesignError } from "../../core/errors.js";
import { requirePin } from "../../core/pkcs11/pin.js";
import { withTokenKey } from "../../core/pkcs11/token-key.js";
import { parseUri } from "../../core/pkcs11/uri.js";
import { certificatePem, resolveSignerCertificate } from "../../core/pki/certificate.js";
import { inputSize, withAtomicOutput } from "../../core/util/files.js";
import { timestampScheduler } from "../../core/util/scheduler.js";
import { withPrivateDir } from "../../core/util/temp.js";
import { runBatch, type BatchItem, type BatchResult, type OutputStyle } from "../batch.js";
import type { FileDetail, SignOptions } from "../options.js";
import { verifyBeforeReplacing } from "./in-place.js";

export type LoginTool = "jarsigner" | "openssl" | "apksigner";

export function toolOutput(tool: LoginTool, o: SignOptions): OutputStyle {
  if (tool === "jarsigner" || tool === "apksigner") return { kind: "embedded" };
  return { kind: "detached", suffix: o.opensslMode === "cms" ? ".p7s" : ".sig" };
}

export interface ToolRun {
  key: { uri: string; keyType: string };
  files: BatchResult<FileDetail>[];
}

export async function signWithTool(
  tool: LoginTool,
  items: BatchItem[],
  o: SignOptions,
  jobs: number,
): Promise<ToolRun> {
  const adapter = await signingAdapter(tool);
  for (const item of items) await inputSize(item.input);
  await adapter.version(o.toolPath); // a missing tool fails before any login
  if (tool === "openssl" && (o.timestamp?.urls.length ?? 0) > 0) {
    throw new CodesignError("USAGE", "openssl does not timestamp", {
      hint: "sign with the cms format (RFC 3161 with fail-over), or timestamp openssl's CMS output with `codesign timestamp`",
    });
  }
  if (tool === "apksigner" && ((o.timestamp?.urls.length ?? 0) > 0 || (o.hash ?? "sha256") !== "sha256")) {
    throw new CodesignError("USAGE", "apksigner chooses its own digests and does not timestamp", {
      hint: "sign APKs without --timestamp and --hash",
    });
  }
  // jarsigner's -tsa attempts share the run's breakers (a dead TSA is skipped, not retried per file).
  const timestamps = timestampScheduler(o.timestamp);
  const access = {
    key: o.key,
    module: o.module,
    moduleArgs: o.moduleArgs,
    pinFile: o.pinFile,
    prompt: o.promptPin,
    tokenRetrySeconds: o.tokenRetrySeconds,
  };
  const pin = await requirePin(
    { uri: parseUri(access.key), pinFile: access.pinFile, prompt: access.prompt },
    "signing",
  );
  // Before codesign's own login: a PIN the tool would mangle must not cost the token a try.
  const problem = (tool === "jarsigner" ? jarsignerPinProblem : opensslPinProblem)(pin.reveal());
  if (problem !== undefined) {
    throw new CodesignError("USAGE", `${tool} cannot log in with this PIN: ${problem}`, {
      hint:
        tool === "jarsigner"
          ? "nothing was tried on the token; give the token an ASCII PIN for jarsigner, or sign in-process (the cms or raw formats take any PIN)"
          : "nothing was tried on the token; sign in-process instead: --tool raw (for openssl dgst -verify) or --tool cms (for openssl cms -verify) take any PIN",
    });
  }
  const chainFiles = [...(o.chain ?? [])];
  return withTokenKey({ ...access, pin }, async (k) => {
    if (k.key.alwaysAuthenticate) {
      // The tool would need a login per signature, which it can only ask for on a terminal.
      throw new CodesignError(
        "USAGE",
        `the key ${k.key.uri} needs a login for every signature, which ${tool} cannot do`,
        {
          hint:
            tool === "jarsigner"
              ? "codesign signs such keys itself: raw, CMS and Authenticode formats"
              : "sign in-process instead: the raw format for `openssl dgst -verify`, the cms format for `openssl cms -verify`",
        },
      );
    }
    const cert = await resolveSignerCertificate(k.key, o.cert);
    const tokenCertificate = k.key.certificate;
    if (tool === "jarsigner" && !tokenCertificate) {
      // SunPKCS11 shows a private key only beside a certificate object with its CKA_ID.
      throw new CodesignError(
        "CERT_NOT_FOUND",
        `jarsigner cannot see the key ${k.key.uri}: no certificate with its CKA_ID is on the token`,
        {
          hint: "SunPKCS11 only offers keys that have a certificate on the token: store it there (`codesign cert selfsign --store` for testing, or import the CA-issued one with the key's id); --cert alone is not enough",
        },
      );
    }
    return withPrivateDir(async (dir) => {
      const certFile = path.join(dir, "signer.pem");
      await writeFile(certFile, certificatePem(cert.der), { mode: 0o600 });
      const alias =
        tool === "jarsigner" && tokenCertificate
          ? await sunpkcs11Alias({
              modulePath: k.moduleChoice.path,
              slot: Number(k.token.slotId),
              pin,
              certificate: tokenCertificate,
              workDir: dir,
              toolPath: o.toolPath,
            })
          : undefined;
      const job = async (item: BatchItem): Promise<SignJob> => ({
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
        hash: o.hash ?? "sha256",
        timestamps: [...(o.timestamp?.urls ?? [])],
        failover: {
          ...(o.timestamp?.retries === undefined ? {} : { retries: o.timestamp.retries }),
          ...(o.timestamp?.timeoutSeconds === undefined
            ? {}
            : { timeoutMs: o.timestamp.timeoutSeconds * 1000 }),
          ...(o.timestamp?.onFailure ? { onFailure: o.timestamp.onFailure } : {}),
          scheduler: timestamps,
        },
        workDir: await mkdtemp(path.join(dir, "job-")),
        toolPath: o.toolPath,
        options: { mode: o.opensslMode, alias },
      });
      const files = await runBatch<FileDetail>(
        items,
        (item) =>
          withAtomicOutput(item.output, async (temp) => {
            const j = await job({ input: item.input, output: temp });
            const outcome = await adapter.sign(j);
            if (tool === "jarsigner" && path.resolve(item.output) === path.resolve(item.input)) {
              await verifyBeforeReplacing(item.input, () =>
                verifyJar(temp, { caFiles: [certFile, ...chainFiles], toolPath: o.toolPath }),
              );
            }
            if (tool === "apksigner" && path.resolve(item.output) === path.resolve(item.input)) {
              await verifyBeforeReplacing(item.input, () =>
                verifyApk(temp, { certFile, toolPath: o.toolPath }),
              );
            }
            return {
              tool: outcome.tool,
              version: outcome.version,
              ...(outcome.timestampUrl ? { timestamp: { url: outcome.timestampUrl } } : {}),
            };
          }),
        { jobs, failFast: o.failFast === true, onResult: (r, done, total) => o.onProgress?.(done, total, r) },
      );
      return { key: k.key, files };
    }, "codesign-tool-");
  });
}
