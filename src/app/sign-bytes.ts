/**
 * `signBytes(data, options)`: a detached CMS signature over bytes held in memory, for callers that
 * have no file to sign — `codesign-git` signs the commit or tag object git pipes to it. The CMS is
 * the one `--tool cms` makes (src/core/pki/cms.ts builds it; the token key signs the DER of the
 * signed attributes), with one login through withTokenKey.
 */
import { createHash } from "node:crypto";
import { CodesignError } from "../core/errors.js";
import { withTokenKey } from "../core/pkcs11/token-key.js";
import {
  OID,
  assembleSignedData,
  encodeSignedData,
  prepareSignerInfo,
  signingTimeAttribute,
} from "../core/pki/cms.js";
import { readCertificates, resolveSignerCertificate } from "../core/pki/certificate.js";
import { describeCertificate } from "../core/pki/x509.js";
import { schemeForKey, type HashName, type KeyType, type SignatureScheme } from "../core/signer.js";
import type { SignOptions } from "./options.js";
import { sha256Fingerprint } from "./verify.js";

export type SignBytesOptions = Pick<
  SignOptions,
  "key" | "module" | "moduleArgs" | "pinFile" | "promptPin" | "hash" | "mechanism" | "cert" | "chain"
> & {
  /** The signingTime attribute (default now). */
  signingTime?: Date | undefined;
};

export interface SignedBytes {
  /** DER ContentInfo(SignedData), detached: the content is not embedded. */
  cms: Uint8Array;
  /** The signer certificate (DER). */
  certificate: Uint8Array;
  /** Its subject. */
  signer: string;
  /** SHA-256 of the certificate's DER, uppercase hex pairs joined by colons. */
  fingerprint: string;
  keyType: KeyType;
  hash: HashName;
  scheme: SignatureScheme;
  signingTime: Date;
}

export async function signBytes(data: Uint8Array, o: SignBytesOptions): Promise<SignedBytes> {
  if (!o.key) {
    throw new CodesignError("USAGE", "no key was named", {
      hint: "give the key's RFC 7512 URI (`codesign keys` lists them)",
    });
  }
  const chain = (await Promise.all((o.chain ?? []).map((f) => readCertificates(f)))).flat();
  return withTokenKey(
    { key: o.key, module: o.module, moduleArgs: o.moduleArgs, pinFile: o.pinFile, prompt: o.promptPin },
    async (k) => {
      const scheme = schemeForKey(k.key.keyType, o.mechanism);
      // EdDSA in CMS (RFC 8419) pairs Ed25519 with SHA-512 for the message digest, as --tool cms does.
      const hash: HashName = scheme === "eddsa" ? "sha512" : (o.hash ?? "sha256");
      const certificate = (await resolveSignerCertificate(k.key, o.cert)).der;
      const signingTime = o.signingTime ?? new Date();
      const { signerInfo, toSign } = prepareSignerInfo({
        hash,
        scheme,
        key: k.key,
        certificate,
        contentType: OID.data,
        digest: new Uint8Array(createHash(hash).update(data).digest()),
        signedAttributes: [signingTimeAttribute(signingTime)],
      });
      const signature = await k.signer.sign({ hash, scheme, input: toSign });
      const signed = assembleSignedData({
        signerInfo,
        signature,
        hash,
        certificate,
        chain,
        eContentType: OID.data,
      });
      return {
        cms: encodeSignedData(signed),
        certificate,
        signer: describeCertificate(certificate).subject,
        fingerprint: sha256Fingerprint(certificate),
        keyType: k.key.keyType,
        hash,
        scheme,
        signingTime,
      };
    },
  );
}
