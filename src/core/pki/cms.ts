/**
 * CMS/PKCS#7 SignedData made with a token key (RFC 5652), built with pkijs + asn1js. The token
 * signs the DER of the signed attributes re-tagged as a SET, as RFC 5652 §5.4 requires; the
 * content itself is only hashed on the host, streamed, so a detached signature of any size
 * needs flat memory.
 */
import * as asn1js from "asn1js";
import { createHash } from "node:crypto";
import { open, readFile, stat } from "node:fs/promises";
import * as pkijs from "pkijs";
import { derOrPem, hashAlgorithm, pemEncode, signatureAlgorithm } from "./asn1.js";
import { CodesignError } from "../errors.js";
import { hashFile } from "../util/hash.js";
import type { HashName, SignatureScheme, Signer } from "../signer.js";

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
  /**
   * The content digest, when the caller started hashing early (e.g. while the token logs in);
   * used only when its hash is the one this signature needs.
   */
  early?: { hash: HashName; digest: Promise<Uint8Array> };
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
  const digest = content
    ? new Uint8Array(createHash(hash).update(content).digest())
    : o.early?.hash === hash
      ? await o.early.digest
      : await hashFile(input, hash);
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
    certificates: [
      cert,
      ...uniqueChain(o.certificate, o.chain).map((c) => pkijs.Certificate.fromBER(buf(c))),
    ],
    signerInfos: [signerInfo],
  });
  return encodeSignedData(signed);
}

/** --chain files often repeat the signer certificate or each other; each goes in once. */
function uniqueChain(signer: Uint8Array, chain: Uint8Array[]): Uint8Array[] {
  const seen = new Set([Buffer.from(signer).toString("base64")]);
  return chain.filter((c) => {
    const k = Buffer.from(c).toString("base64");
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
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

// DER of the OID 1.2.840.113549.1.7.2 (id-signedData), as it follows the outer SEQUENCE header.
const SIGNED_DATA_OID_DER = Buffer.from("06092a864886f70d010702", "hex");

/**
 * Whether bytes look like a CMS SignedData, from their start only: PEM `CMS`/`PKCS7`, or DER
 * whose ContentInfo names id-signedData. Deciding by shape, not by a full parse, lets a damaged
 * CMS be reported as a damaged CMS instead of being taken for a raw signature.
 */
export function looksLikeCms(head: Uint8Array): boolean {
  const text = Buffer.from(head.subarray(0, 64)).toString("latin1");
  if (/^\s*-----BEGIN (CMS|PKCS7)-----/.test(text)) return true;
  if (head[0] !== 0x30 || head.length < 2) return false;
  // Skip the SEQUENCE's length octets (short form, or long form 0x8N + N bytes).
  const lenByte = head[1] ?? 0;
  const at = 2 + (lenByte & 0x80 ? lenByte & 0x7f : 0);
  return Buffer.from(head.subarray(at, at + SIGNED_DATA_OID_DER.length)).equals(SIGNED_DATA_OID_DER);
}

/** The first bytes of a file (enough for looksLikeCms), without reading it whole. */
export async function fileHead(file: string, bytes = 64): Promise<Uint8Array> {
  const fh = await open(file, "r");
  try {
    const b = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(b, 0, bytes, 0);
    return new Uint8Array(b.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

export function cmsOutput(der: Uint8Array, format: "der" | "pem"): Uint8Array | string {
  return format === "pem" ? pemEncode("CMS", der) : der;
}
