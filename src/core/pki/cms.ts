/**
 * CMS/PKCS#7 SignedData (RFC 5652), built with pkijs + asn1js, in two pure steps around the
 * token: `prepareSignerInfo` says what must be signed — the DER of the signed attributes
 * re-tagged as a SET, as RFC 5652 §5.4 requires — and `assembleSignedData` puts the signature in.
 * Authenticode is the same structure with another content type and more attributes.
 */
import * as asn1js from "asn1js";
import { open } from "node:fs/promises";
import * as pkijs from "pkijs";
import { derOrPem, pemEncode } from "./asn1.js";
import { hashAlgorithm, signatureAlgorithm } from "./algorithms.js";
import { CodesignError } from "../errors.js";
import type { HashName, KeyDescription, SignInput, SignatureScheme } from "../signer.js";

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

// A copy of exactly these bytes: a Buffer's slice() is a view into a shared pool, whose .buffer is the whole pool.
const buf = (u: Uint8Array): ArrayBuffer => Uint8Array.from(u).buffer;

/** Parsed certificates, per DER array: a batch parses its signer and chain once, not once per file. */
const parsed = new WeakMap<Uint8Array, pkijs.Certificate>();
function certificateOf(der: Uint8Array): pkijs.Certificate {
  let cert = parsed.get(der);
  if (!cert) {
    cert = pkijs.Certificate.fromBER(buf(der));
    parsed.set(der, cert);
  }
  return cert;
}

/** The signed attributes as the token signs them: `SET OF Attribute`, DER (sorted, tag 0x31). */
export function signedAttributesDer(attrs: pkijs.SignedAndUnsignedAttributes): Uint8Array {
  const der = new Uint8Array(attrs.toSchema().toBER());
  der[0] = 0x31;
  return der;
}

/** The SignerInfo's signature algorithm field, as `openssl cms` and osslsigncode write it. */
function signerSignatureAlgorithm(
  key: Pick<KeyDescription, "keyType" | "curve">,
  scheme: SignatureScheme,
  hash: HashName,
): pkijs.AlgorithmIdentifier {
  if (scheme === "rsa-pkcs1") {
    return new pkijs.AlgorithmIdentifier({
      algorithmId: OID.rsaEncryption,
      algorithmParams: new asn1js.Null(),
    });
  }
  return signatureAlgorithm(key.keyType, scheme, hash, key.curve);
}

export interface SignerInfoRequest {
  hash: HashName;
  scheme: SignatureScheme;
  key: Pick<KeyDescription, "keyType" | "curve">;
  /** DER signer certificate: its issuer and serial name the signer. */
  certificate: Uint8Array;
  /** The content type the signature covers (id-data for CMS, SpcIndirectDataContent for Authenticode). */
  contentType: string;
  /** The digest of the content, with `hash`. */
  digest: Uint8Array;
  /**
   * Signed attributes besides contentType and messageDigest (which are always added), or
   * `false` for none at all: then the token signs the content digest directly.
   */
  signedAttributes: pkijs.Attribute[] | false;
}

/**
 * A SignerInfo waiting for its signature, and what the token must sign for it: the DER of the
 * signed attributes (sorted, as DER wants of a SET OF), or the content digest when there are none.
 */
export function prepareSignerInfo(o: SignerInfoRequest): { signerInfo: pkijs.SignerInfo; toSign: SignInput } {
  const cert = certificateOf(o.certificate);
  const signerInfo = new pkijs.SignerInfo({
    version: 1,
    sid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
    digestAlgorithm: hashAlgorithm(o.hash),
    signatureAlgorithm: signerSignatureAlgorithm(o.key, o.scheme, o.hash),
  });
  if (o.signedAttributes === false) {
    if (o.scheme === "eddsa") {
      throw new CodesignError("INVALID_INPUT", "EdDSA CMS signatures need signed attributes", {
        hint: "keep the signed attributes, or use an RSA or EC key",
      });
    }
    return { signerInfo, toSign: { digest: o.digest } };
  }
  const attributes = [
    new pkijs.Attribute({
      type: OID.contentType,
      values: [new asn1js.ObjectIdentifier({ value: o.contentType })],
    }),
    new pkijs.Attribute({
      type: OID.messageDigest,
      values: [new asn1js.OctetString({ valueHex: buf(o.digest) })],
    }),
    ...o.signedAttributes,
  ];
  const der = new Map(attributes.map((a) => [a, Buffer.from(a.toSchema().toBER())]));
  attributes.sort((x, y) => Buffer.compare(der.get(x) as Buffer, der.get(y) as Buffer));
  signerInfo.signedAttrs = new pkijs.SignedAndUnsignedAttributes({ type: 0, attributes });
  return { signerInfo, toSign: { message: signedAttributesDer(signerInfo.signedAttrs) } };
}

/** The signingTime attribute CMS signatures carry. */
export function signingTimeAttribute(when: Date = new Date()): pkijs.Attribute {
  return new pkijs.Attribute({
    type: OID.signingTime,
    values: [new asn1js.UTCTime({ valueDate: when })],
  });
}

/** The SignedData around one signed SignerInfo, with the signer certificate and the chain. */
export function assembleSignedData(o: {
  signerInfo: pkijs.SignerInfo;
  signature: Uint8Array;
  hash: HashName;
  certificate: Uint8Array;
  chain: Uint8Array[];
  eContentType: string;
  /** Attached content: an OCTET STRING for id-data, the content's own structure otherwise. */
  eContent?: asn1js.BaseBlock | undefined;
}): pkijs.SignedData {
  o.signerInfo.signature = new asn1js.OctetString({ valueHex: buf(o.signature) });
  return new pkijs.SignedData({
    version: 1,
    digestAlgorithms: [hashAlgorithm(o.hash)],
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: o.eContentType,
      // pkijs types eContent as an OCTET STRING, but writes whatever it holds under [0] EXPLICIT.
      ...(o.eContent ? { eContent: o.eContent as asn1js.OctetString } : {}),
    }),
    certificates: [o.certificate, ...uniqueChain(o.certificate, o.chain)].map(certificateOf),
    signerInfos: [o.signerInfo],
  });
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
