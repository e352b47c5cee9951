/**
 * CMS/PKCS#7 SignedData made with a token key (RFC 5652), built with pkijs + asn1js. The token
 * signs the DER of the signed attributes re-tagged as a SET, as RFC 5652 §5.4 requires; the
 * content itself is only hashed on the host, streamed, so a detached signature of any size
 * needs flat memory.
 */
import * as asn1js from "asn1js";
import { readFile, stat } from "node:fs/promises";
import * as pkijs from "pkijs";
import { derOrPem, hashAlgorithm, pemEncode, signatureAlgorithm } from "./asn1.js";
import { CodesignError } from "./errors.js";
import { hashFile } from "./hash.js";
import type { HashName, SignatureScheme, Signer } from "./signer.js";

export const OID = {
  data: "1.2.840.113549.1.7.1",
  signedData: "1.2.840.113549.1.7.2",
  contentType: "1.2.840.113549.1.9.3",
  messageDigest: "1.2.840.113549.1.9.4",
  signingTime: "1.2.840.113549.1.9.5",
  timeStampToken: "1.2.840.113549.1.9.16.2.14",
  rsaEncryption: "1.2.840.113549.1.1.1",
} as const;

/** Attached content is held in memory once; past this, detached is the only sane choice. */
export const ATTACHED_MAX_BYTES = 256 * 1024 * 1024;

export interface CmsSignOptions {
  hash: HashName;
  scheme: SignatureScheme;
  /** DER signer certificate; must hold the signer's public key (checked by the caller). */
  certificate: Uint8Array;
  chain: Uint8Array[];
  attached: boolean;
  /** Default true: contentType, messageDigest and signingTime are signed. */
  signedAttributes: boolean;
  signingTime?: Date;
}

const buf = (u: Uint8Array): ArrayBuffer => u.slice().buffer as ArrayBuffer;

/** The bytes the signer signs: the signed attributes as `SET OF Attribute` (tag 0x31, not [0]). */
export function signedAttributesDer(attrs: pkijs.SignedAndUnsignedAttributes): Uint8Array {
  const der = new Uint8Array(attrs.toSchema().toBER());
  der[0] = 0x31;
  return der;
}

/** The SignedData's signature algorithm field, as `openssl cms` writes it. */
function cmsSignatureAlgorithm(
  signer: Signer,
  scheme: SignatureScheme,
  hash: HashName,
): pkijs.AlgorithmIdentifier {
  if (scheme === "rsa-pkcs1") {
    return new pkijs.AlgorithmIdentifier({
      algorithmId: OID.rsaEncryption,
      algorithmParams: new asn1js.Null(),
    });
  }
  return signatureAlgorithm(signer.key.keyType, scheme, hash, signer.key.curve);
}

/** Signs `input` (a file path) and returns the DER ContentInfo. */
export async function signCms(signer: Signer, input: string, o: CmsSignOptions): Promise<Uint8Array> {
  // EdDSA in CMS (RFC 8419) pairs Ed25519 with SHA-512 for the message digest.
  const hash: HashName = o.scheme === "eddsa" ? "sha512" : o.hash;
  let content: Uint8Array | undefined;
  if (o.attached) {
    const size = (await stat(input)).size;
    if (size > ATTACHED_MAX_BYTES) {
      throw new CodesignError(
        "INVALID_INPUT",
        `${input} is over 256 MiB: too large to embed in the signature`,
        {
          hint: "sign it detached (drop --attached); the signature then travels beside the file",
        },
      );
    }
    content = new Uint8Array(await readFile(input));
  }
  const digest = await hashFile(input, hash);
  const cert = pkijs.Certificate.fromBER(buf(o.certificate));
  const signerInfo = new pkijs.SignerInfo({
    version: 1,
    sid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
    digestAlgorithm: hashAlgorithm(hash),
    signatureAlgorithm: cmsSignatureAlgorithm(signer, o.scheme, hash),
  });
  let signature: Uint8Array;
  if (o.signedAttributes) {
    signerInfo.signedAttrs = new pkijs.SignedAndUnsignedAttributes({
      type: 0,
      attributes: [
        new pkijs.Attribute({
          type: OID.contentType,
          values: [new asn1js.ObjectIdentifier({ value: OID.data })],
        }),
        new pkijs.Attribute({
          type: OID.messageDigest,
          values: [new asn1js.OctetString({ valueHex: buf(digest) })],
        }),
        new pkijs.Attribute({
          type: OID.signingTime,
          values: [new asn1js.UTCTime({ valueDate: o.signingTime ?? new Date() })],
        }),
      ],
    });
    signature = await signer.sign({
      hash,
      scheme: o.scheme,
      input: { message: signedAttributesDer(signerInfo.signedAttrs) },
    });
  } else if (o.scheme === "eddsa") {
    throw new CodesignError("INVALID_INPUT", "EdDSA CMS signatures need signed attributes", {
      hint: "drop --no-signed-attributes, or use an RSA or EC key",
    });
  } else {
    signature = await signer.sign({ hash, scheme: o.scheme, input: { digest } });
  }
  signerInfo.signature = new asn1js.OctetString({ valueHex: buf(signature) });
  const signed = new pkijs.SignedData({
    version: 1,
    digestAlgorithms: [hashAlgorithm(hash)],
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: OID.data,
      ...(content ? { eContent: new asn1js.OctetString({ valueHex: buf(content) }) } : {}),
    }),
    certificates: [cert, ...o.chain.map((c) => pkijs.Certificate.fromBER(buf(c)))],
    signerInfos: [signerInfo],
  });
  return encodeSignedData(signed);
}

export function encodeSignedData(signed: pkijs.SignedData): Uint8Array {
  const info = new pkijs.ContentInfo({ contentType: OID.signedData, content: signed.toSchema(true) });
  return new Uint8Array(info.toSchema().toBER());
}

/** Parses a CMS SignedData (DER or PEM `CMS`/`PKCS7`); INVALID_INPUT naming `what` otherwise. */
export function parseSignedData(bytes: Uint8Array, what: string): pkijs.SignedData {
  try {
    const der = derOrPem(bytes, ["CMS", "PKCS7"]);
    const info = pkijs.ContentInfo.fromBER(buf(der));
    if (info.contentType !== OID.signedData) throw new Error(`content type ${info.contentType}`);
    return new pkijs.SignedData({ schema: info.content });
  } catch (cause) {
    throw new CodesignError("INVALID_INPUT", `${what} is not a CMS/PKCS#7 signature`, {
      hint: "give a .p7s made by codesign sign --tool cms or openssl cms -sign (DER or PEM)",
      cause,
    });
  }
}

export const isCms = (bytes: Uint8Array): boolean => {
  try {
    parseSignedData(bytes, "input");
    return true;
  } catch {
    return false;
  }
};

export function cmsOutput(der: Uint8Array, format: "der" | "pem"): Uint8Array | string {
  return format === "pem" ? pemEncode("CMS", der) : der;
}
