/**
 * Authenticode through the core: osslsigncode shapes the file (`extract-data` before, and
 * `attach-signature` after), codesign builds the PKCS#7 with pkijs and the token signs it
 * in-process. osslsigncode never loads the module and never sees the PIN.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { adapter as osslsigncode, verifyAuthenticode } from "../../../adapters/osslsigncode.js";
import {
  AUTHENTICODE_OID,
  authenticodeAttributes,
  readExtractedContent,
} from "../../core/pki/authenticode.js";
import { assembleSignedData, encodeSignedData, prepareSignerInfo } from "../../core/pki/cms.js";
import { inputSize, withAtomicOutput } from "../../core/util/files.js";
import type { TokenFormat } from "./contract.js";
import { verifyBeforeReplacing } from "./in-place.js";
import { timestamp } from "./timestamp.js";

export const authenticode = {
  name: "osslsigncode",
  output: { kind: "embedded" },
  needsCertificate: true,
  // Each file is two short osslsigncode runs around one signature: keep the next files' runs going.
  overlap: 2,
  fileDigest: () => undefined,
  async check(input, o) {
    await inputSize(input);
    await osslsigncode.version(o.toolPath); // a missing or too old tool fails before any login
  },
  async prepare(item, ctx) {
    const o = ctx.options;
    const { hash, scheme } = ctx;
    const certificate = ctx.certificate as Uint8Array;
    // Files of their own in the run's private directory (removed with it): no directory per file.
    const base = path.join(ctx.workDir, `${randomBytes(8).toString("hex")}`);
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
        signedAttributes: authenticodeAttributes(o),
      });
      return {
        request: { hash, scheme, input: toSign },
        async finish(signature) {
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
            const stamp = await timestamp(signed, o, AUTHENTICODE_OID.rfc3161Timestamp);
            await writeFile(sigFile, encodeSignedData(signed), { mode: 0o600 });
            await withAtomicOutput(
              item.output,
              async (temp) => {
                await osslsigncode.attachSignature({
                  input: item.input,
                  signature: sigFile,
                  output: temp,
                  hash,
                  caFile: ctx.certificateFiles[0] as string,
                  toolPath: o.toolPath,
                });
                if (path.resolve(item.output) === path.resolve(item.input)) {
                  await verifyBeforeReplacing(item.input, () =>
                    verifyAuthenticode(temp, { caFiles: ctx.certificateFiles, toolPath: o.toolPath }),
                  );
                }
              },
              { keepExtension: true },
            );
            return {
              scheme,
              hash,
              tool: "osslsigncode",
              version: await osslsigncode.version(o.toolPath),
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
