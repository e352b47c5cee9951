/**
 * Authenticode through the core: osslsigncode shapes the file (`extract-data` before, and
 * `attach-signature` after), codesign builds the PKCS#7 with pkijs and the token signs it
 * in-process. osslsigncode never loads the module and never sees the PIN.
 *
 * A file that already carries a signature is nested into (`nest`: the new signature becomes a
 * nested one, numbered as `osslsigncode sign -nest` numbers it), replaced (`replace`), skipped
 * (`skipSigned`), or refused. The detached variant writes the finished PKCS#7 instead of
 * attaching it, and `attach()` puts such a signature into its file later.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  adapter as osslsigncode,
  extractSignature,
  verifyAuthenticode,
  writeAttachTrust,
} from "../../../adapters/osslsigncode.js";
import { CodesignError } from "../../core/errors.js";
import { derOrPem } from "../../core/pki/asn1.js";
import {
  AUTHENTICODE_OID,
  authenticodeAttributes,
  extractedCoverage,
  nestedSignatureCount,
  readDetachedSignature,
  readExtractedContent,
  sequenceNumberAttribute,
} from "../../core/pki/authenticode.js";
import { assembleSignedData, encodeSignedData, prepareSignerInfo } from "../../core/pki/cms.js";
import {
  assertDistinct,
  inputSize,
  unreadable,
  withAtomicOutput,
  writeFileAtomic,
} from "../../core/util/files.js";
import { removeOnExit, withPrivateDir } from "../../core/util/temp.js";
import { signedName, type OutputStyle } from "../batch.js";
import type { AttachOptions, AttachReport, FileDetail, SignOptions } from "../options.js";
import type { FormatContext, TokenFormat } from "./contract.js";
import { verifyBeforeReplacing } from "./in-place.js";
import { timestamp } from "./timestamp.js";

/** The run's -CAfile for attach-signature (signer, --chain, system roots), written once a run. */
const attachTrustFiles = new WeakMap<FormatContext, Promise<string>>();
function attachTrust(ctx: FormatContext): Promise<string> {
  let file = attachTrustFiles.get(ctx);
  if (!file) {
    const dest = path.join(ctx.workDir, "attach-ca.pem");
    const certificates = ctx.certificate ? [ctx.certificate, ...ctx.chain] : [...ctx.chain];
    file = writeAttachTrust(dest, certificates).then(() => dest);
    attachTrustFiles.set(ctx, file);
  }
  return file;
}

/** The file's existing signature (DER, with its nested ones), or undefined when it has none. */
async function readExistingSignature(
  input: string,
  toolPath: string | undefined,
): Promise<Uint8Array | undefined> {
  // A signature is public data: one file in the temp directory, gone at once (and at exit).
  const out = path.join(os.tmpdir(), `codesign-existing-${randomBytes(8).toString("hex")}.p7`);
  const forget = removeOnExit(out);
  try {
    const found = await extractSignature({ input, output: out, toolPath });
    return found ? new Uint8Array(await readFile(out)) : undefined;
  } finally {
    await rm(out, { force: true });
    forget();
  }
}

/** Read once per run (one options object) and file: `check`, `skip` and `prepare` all ask. */
const existingByRun = new WeakMap<SignOptions, Map<string, Promise<Uint8Array | undefined>>>();

function existingSignature(input: string, o: SignOptions): Promise<Uint8Array | undefined> {
  let run = existingByRun.get(o);
  if (!run) existingByRun.set(o, (run = new Map()));
  const key = path.resolve(input);
  let p = run.get(key);
  if (!p) {
    p = readExistingSignature(input, o.toolPath);
    run.set(key, p);
  }
  return p;
}

/** Types osslsigncode cannot nest into (it would replace the signature with a warning). */
const ONE_SIGNATURE = [".cat", ".appx", ".msix", ".appxbundle", ".msixbundle"];

const alreadySigned = (input: string): CodesignError =>
  new CodesignError(
    "USAGE",
    `${input} is already signed: nest the new signature beside the existing one (--nest) or replace it (--replace)`,
    { hint: "or leave files that already carry a signature as they are (--skip-signed)" },
  );

/** Choices that contradict each other, refused before anything is read. */
function refuseConflicts(o: {
  nest?: boolean | undefined;
  replace?: boolean | undefined;
  skipSigned?: boolean | undefined;
  detachedSignature?: boolean | undefined;
}): void {
  const chosen = [
    ...(o.nest ? ["nest (--nest)"] : []),
    ...(o.replace ? ["replace (--replace)"] : []),
    ...(o.skipSigned ? ["skip signed files (--skip-signed)"] : []),
  ];
  if (chosen.length > 1) {
    throw new CodesignError("USAGE", `choose one way to treat signed files, not ${chosen.join(" and ")}`, {
      hint: "--nest adds a signature, --replace drops the existing ones, --skip-signed leaves the file",
    });
  }
  if (o.detachedSignature && (o.nest || o.replace)) {
    throw new CodesignError(
      "USAGE",
      "a detached signature leaves the file unchanged: nesting or replacing is decided when it is attached",
      { hint: "give --nest or --replace to `codesign attach`" },
    );
  }
}

function authenticodeFormat(detached: boolean) {
  const output: OutputStyle = detached ? { kind: "detached", suffix: ".p7" } : { kind: "embedded" };
  return {
    name: "osslsigncode",
    output,
    needsCertificate: true,
    // Each file is two short osslsigncode runs around one signature: keep the next files' runs going.
    overlap: 2,
    fileDigest: () => undefined,
    async check(input, o) {
      refuseConflicts(o);
      await inputSize(input);
      await osslsigncode.version(o.toolPath); // a missing or too old tool fails before any login
      if (detached && !o.skipSigned) return; // the file is not changed: its signatures do not matter
      const current = await existingSignature(input, o);
      if (current && !o.nest && !o.replace && !o.skipSigned) throw alreadySigned(input);
      if (current && o.nest && ONE_SIGNATURE.includes(path.extname(input).toLowerCase())) {
        throw new CodesignError("USAGE", `${input} can hold one signature only: it cannot be nested into`, {
          hint: "replace its signature (--replace), or leave it as it is (--skip-signed)",
        });
      }
    },
    async skip(input, o) {
      if (!o.skipSigned) return undefined;
      return (await existingSignature(input, o)) ? "already signed" : undefined;
    },
    async prepare(item, ctx) {
      const o = ctx.options;
      const { hash, scheme } = ctx;
      const certificate = ctx.certificate as Uint8Array;
      const current = detached ? undefined : await existingSignature(item.input, o);
      // Unsigned files are signed as usual whichever way signed ones are treated.
      const sequence = current && o.nest ? nestedSignatureCount(current, item.input) + 1 : undefined;
      // Files of their own in the run's private directory (removed with it): no directory per file.
      const base = path.join(ctx.workDir, randomBytes(8).toString("hex"));
      const data = `${base}.content.p7`;
      const sigFile = `${base}.signature.p7`;
      const cleanup = () => Promise.all([rm(data, { force: true }), rm(sigFile, { force: true })]);
      try {
        await osslsigncode.extractData({ input: item.input, hash, output: data, toolPath: o.toolPath });
        const extracted = readExtractedContent(new Uint8Array(await readFile(data)), item.input);
        const { signerInfo, toSign } = prepareSignerInfo({
          hash,
          scheme,
          key: ctx.key,
          certificate,
          contentType: extracted.contentType,
          digest: new Uint8Array(createHash(hash).update(extracted.digestedOctets).digest()),
          signedAttributes: [
            ...authenticodeAttributes(o),
            ...(sequence === undefined ? [] : [sequenceNumberAttribute(sequence)]),
          ],
        });
        return {
          request: { hash, scheme, input: toSign },
          async finish(signature): Promise<FileDetail> {
            try {
              const signed = assembleSignedData({
                signerInfo,
                signature,
                hash,
                certificate,
                chain: ctx.chain,
                eContentType: extracted.contentType,
                eContent: extracted.content,
              });
              const stamp = await timestamp(signed, ctx, AUTHENTICODE_OID.rfc3161Timestamp);
              const version = await osslsigncode.version(o.toolPath);
              if (detached) {
                await writeFileAtomic(item.output, encodeSignedData(signed), { syncLater: ctx.outputs });
                return { scheme, hash, tool: "osslsigncode", version, detached: true, ...stamp };
              }
              await writeFile(sigFile, encodeSignedData(signed), { mode: 0o600 });
              await withAtomicOutput(
                item.output,
                async (temp) => {
                  await osslsigncode.attachSignature({
                    input: item.input,
                    signature: sigFile,
                    output: temp,
                    hash,
                    caFile: await attachTrust(ctx),
                    nest: sequence !== undefined,
                    toolPath: o.toolPath,
                  });
                  if (path.resolve(item.output) === path.resolve(item.input)) {
                    await verifyBeforeReplacing(item.input, () =>
                      verifyAuthenticode(temp, { caFiles: ctx.certificateFiles, toolPath: o.toolPath }),
                    );
                  }
                },
                { keepExtension: true, syncLater: ctx.outputs },
              );
              return {
                scheme,
                hash,
                tool: "osslsigncode",
                version,
                ...(sequence === undefined ? {} : { nested: { sequence } }),
                ...(current && sequence === undefined ? { replaced: true } : {}),
                ...stamp,
              };
            } finally {
              await cleanup();
            }
          },
        };
      } catch (e) {
        await cleanup();
        throw e;
      }
    },
  } satisfies TokenFormat;
}

/** Signs the file: its signed copy (or the file itself, in place) carries the signature. */
export const authenticode = authenticodeFormat(false);

/** Writes the Authenticode PKCS#7 alone (`<name>.p7`); the file is left unchanged. */
export const authenticodeDetached = authenticodeFormat(true);

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Puts a detached Authenticode signature into the file it was made for: no token, no PIN. The
 * signature must cover this very file (its digest is compared with `osslsigncode extract-data`'s
 * first: osslsigncode itself would attach a signature for another file and exit 0), and the
 * signed copy is written atomically.
 */
export async function attach(o: AttachOptions): Promise<AttachReport> {
  const started = performance.now();
  refuseConflicts(o);
  const output = o.out ?? signedName(o.input);
  assertDistinct(o.input, output);
  await inputSize(o.input);
  const version = await osslsigncode.version(o.toolPath);
  const bytes = new Uint8Array(await readFile(o.signature).catch(unreadable(o.signature, "the signature")));
  const sig = readDetachedSignature(bytes, o.signature);
  if (!sig.signerCertificate) {
    throw new CodesignError("INVALID_INPUT", `${o.signature} carries no signer certificate`, {
      hint: "Authenticode signatures carry their signer's certificate; sign again with codesign sign --detached-signature",
    });
  }
  const signerCertificate = sig.signerCertificate;
  return withPrivateDir(async (dir) => {
    const signed = await extractSignature({
      input: o.input,
      output: path.join(dir, "existing.p7"),
      toolPath: o.toolPath,
    });
    if (signed && !o.nest && !o.replace) throw alreadySigned(o.input);
    const data = path.join(dir, "content.p7");
    await osslsigncode.extractData({ input: o.input, hash: sig.hash, output: data, toolPath: o.toolPath });
    const extracted = readExtractedContent(new Uint8Array(await readFile(data)), o.input);
    if (extracted.contentType !== sig.contentType || !sameBytes(extractedCoverage(extracted), sig.covers)) {
      throw new CodesignError(
        "INVALID_INPUT",
        `${o.signature} was not made for ${o.input}: the file's Authenticode digest differs`,
        { hint: "attach the signature to the exact file it was made from (same build, unchanged since)" },
      );
    }
    const sigFile = path.join(dir, "signature.p7");
    await writeFile(sigFile, derOrPem(bytes, ["PKCS7", "CMS"]), { mode: 0o600 });
    const caFile = path.join(dir, "attach-ca.pem");
    await writeAttachTrust(caFile, [signerCertificate, ...sig.certificates]);
    const nest = signed && o.nest === true;
    await withAtomicOutput(
      output,
      (temp) =>
        osslsigncode.attachSignature({
          input: o.input,
          signature: sigFile,
          output: temp,
          hash: sig.hash,
          caFile,
          nest,
          toolPath: o.toolPath,
        }),
      { keepExtension: true },
    );
    return {
      input: o.input,
      output,
      signature: o.signature,
      hash: sig.hash,
      nested: nest,
      replaced: signed && !nest,
      tool: "osslsigncode",
      version,
      ms: Math.round(performance.now() - started),
    };
  }, "codesign-attach-");
}
