/** CMS/PKCS#7 SignedData, detached (default, streamed digest) or attached, optionally timestamped. */
import * as asn1js from "asn1js";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { CodesignError } from "../../core/errors.js";
import {
  ATTACHED_MAX_BYTES,
  OID,
  assembleSignedData,
  cmsOutput,
  encodeSignedData,
  prepareSignerInfo,
  signingTimeAttribute,
} from "../../core/pki/cms.js";
import type { HashName } from "../../core/signer.js";
import { inputSize, writeFileAtomic } from "../../core/util/files.js";
import type { TokenFormat } from "./contract.js";
import { timestamp } from "./timestamp.js";

export const cms = {
  name: "cms",
  output: { kind: "detached", suffix: ".p7s" },
  needsCertificate: true,
  overlap: 2,
  fileDigest: (o) => (o.attached || o.mechanism === "eddsa" ? undefined : (o.hash ?? "sha256")),
  async check(input, o) {
    if ((await inputSize(input)) > ATTACHED_MAX_BYTES && o.attached) {
      throw new CodesignError(
        "INVALID_INPUT",
        `${input} is over 256 MiB: too large to embed in the signature`,
        { hint: "sign it detached; the signature then travels beside the file" },
      );
    }
  },
  async prepare(item, ctx) {
    const o = ctx.options;
    const certificate = ctx.certificate as Uint8Array;
    // EdDSA in CMS (RFC 8419) pairs Ed25519 with SHA-512 for the message digest.
    const hash: HashName = ctx.scheme === "eddsa" ? "sha512" : ctx.hash;
    const content = o.attached ? new Uint8Array(await readFile(item.input)) : undefined;
    const digest = content
      ? new Uint8Array(createHash(hash).update(content).digest())
      : await ctx.digest(item.input, hash);
    const { signerInfo, toSign } = prepareSignerInfo({
      hash,
      scheme: ctx.scheme,
      key: ctx.key,
      certificate,
      contentType: OID.data,
      digest,
      signedAttributes: o.signedAttributes === false ? false : [signingTimeAttribute()],
    });
    return {
      request: { hash, scheme: ctx.scheme, input: toSign },
      async finish(signature) {
        const signed = assembleSignedData({
          signerInfo,
          signature,
          hash,
          certificate,
          chain: ctx.chain,
          eContentType: OID.data,
          eContent: content
            ? new asn1js.OctetString({ valueHex: Uint8Array.from(content).buffer })
            : undefined,
        });
        const stamp = await timestamp(signed, ctx, OID.timeStampToken);
        const encoding = o.encoding ?? "der";
        await writeFileAtomic(item.output, cmsOutput(encodeSignedData(signed), encoding), {
          syncLater: ctx.outputs,
        });
        return { scheme: ctx.scheme, attached: o.attached === true, encoding, ...stamp };
      },
    };
  },
} satisfies TokenFormat;
