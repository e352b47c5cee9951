/**
 * Authenticode (Microsoft's PKCS#7 profile for PE, MSI, CAB, CAT, APPX and scripts), pure bytes.
 * The file-specific part — the SpcIndirectDataContent holding the file's digest — comes from
 * `osslsigncode extract-data`; this module reads it and makes the Authenticode signed attributes.
 * The rest is ordinary CMS (./cms.ts): the token signs the signed attributes, whose
 * messageDigest covers the content octets of the SpcIndirectDataContent.
 */
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { CodesignError } from "../errors.js";
import type { HashName } from "../signer.js";
import { hashByOid } from "./asn1.js";
import { OID, parseSignedData } from "./cms.js";

export const AUTHENTICODE_OID = {
  /** SPC_INDIRECT_DATA_OBJID: the content type of PE, MSI, CAB, APPX and script signatures. */
  indirectData: "1.3.6.1.4.1.311.2.1.4",
  statementType: "1.3.6.1.4.1.311.2.1.11",
  individualCodeSigning: "1.3.6.1.4.1.311.2.1.21",
  opusInfo: "1.3.6.1.4.1.311.2.1.12",
  /** SPC_RFC3161_OBJID: the unsigned attribute holding an RFC 3161 timestamp token. */
  rfc3161Timestamp: "1.3.6.1.4.1.311.3.3.1",
  /** SPC_NESTED_SIGNATURE_OBJID: the primary signer's unsigned attribute holding further signatures. */
  nestedSignature: "1.3.6.1.4.1.311.2.4.1",
  /**
   * PKCS9_SEQUENCE_NUMBER as osslsigncode names it: the signed attribute `sign -nest` gives each
   * nested signature (1, 2, …), by which verifiers list them in order.
   */
  sequenceNumber: "1.2.840.113549.1.9.25.4",
} as const;

export interface ExtractedContent {
  /** The content type to sign (SpcIndirectDataContent, or a catalog's CTL). */
  contentType: string;
  /** The content itself, to embed as the SignedData's eContent. */
  content: asn1js.BaseBlock;
  /** What messageDigest covers: the content's octets without its tag and length. */
  digestedOctets: Uint8Array;
}

/** Reads the unsigned PKCS#7 `osslsigncode extract-data` writes (DER). */
export function readExtractedContent(der: Uint8Array, file: string): ExtractedContent {
  try {
    const info = pkijs.ContentInfo.fromBER(Uint8Array.from(der).buffer);
    if (info.contentType !== OID.signedData) throw new Error(`content type ${info.contentType}`);
    const signed = new pkijs.SignedData({ schema: info.content });
    const content = signed.encapContentInfo.eContent as asn1js.BaseBlock | undefined;
    if (!content || !(content instanceof asn1js.Constructed)) throw new Error("no structured content");
    return {
      contentType: signed.encapContentInfo.eContentType,
      content,
      digestedOctets: new Uint8Array(content.valueBlock.toBER()),
    };
  } catch (cause) {
    throw new CodesignError(
      "TOOL_FAILED",
      `osslsigncode extract-data gave no Authenticode content for ${file}`,
      { hint: "check that osslsigncode can sign this file type (osslsigncode 2.9 or newer)", cause },
    );
  }
}

const context = (tagNumber: number, value: asn1js.BaseBlock) =>
  new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber }, value: [value] });

/** An IMPLICIT context-tagged string: [n] IA5String for ASCII, [n] BMPString otherwise. */
function taggedString(tagNumber: number, bytes: Uint8Array): asn1js.Primitive {
  return new asn1js.Primitive({
    idBlock: { tagClass: 3, tagNumber },
    valueHex: Uint8Array.from(bytes).buffer,
  });
}

/** SpcString: ascii [1] IMPLICIT IA5String when it can be, else unicode [0] IMPLICIT BMPString. */
function spcString(text: string): asn1js.Primitive {
  if (/^[\x20-\x7e]*$/.test(text)) return taggedString(1, new TextEncoder().encode(text));
  return taggedString(0, Buffer.from(text, "utf16le").swap16());
}

/**
 * The Authenticode signed attributes besides contentType and messageDigest: the statement type
 * (individual code signing) and, when given, the program's description and URL (SpcSpOpusInfo).
 */
export function authenticodeAttributes(o: { description?: string | undefined; url?: string | undefined }) {
  const attributes = [
    new pkijs.Attribute({
      type: AUTHENTICODE_OID.statementType,
      values: [
        new asn1js.Sequence({
          value: [new asn1js.ObjectIdentifier({ value: AUTHENTICODE_OID.individualCodeSigning })],
        }),
      ],
    }),
  ];
  if (o.url !== undefined && !/^[\x20-\x7e]*$/.test(o.url)) {
    throw new CodesignError("INVALID_INPUT", `the program URL ${JSON.stringify(o.url)} is not plain ASCII`, {
      hint: "percent-encode it, as a URL is",
    });
  }
  if (o.description !== undefined || o.url !== undefined) {
    attributes.push(
      new pkijs.Attribute({
        type: AUTHENTICODE_OID.opusInfo,
        values: [
          new asn1js.Sequence({
            value: [
              ...(o.description !== undefined ? [context(0, spcString(o.description))] : []),
              ...(o.url !== undefined ? [context(1, taggedString(0, new TextEncoder().encode(o.url)))] : []),
            ],
          }),
        ],
      }),
    );
  }
  return attributes;
}

const buf = (u: Uint8Array): ArrayBuffer => Uint8Array.from(u).buffer;

/**
 * How many nested signatures an existing Authenticode signature (as `osslsigncode
 * extract-signature` writes it) carries beside its primary one.
 */
export function nestedSignatureCount(existing: Uint8Array, file: string): number {
  const signed = parseSignedData(existing, `the signature in ${file}`);
  const primary = signed.signerInfos[0];
  const nested = primary?.unsignedAttrs?.attributes.filter(
    (a) => a.type === AUTHENTICODE_OID.nestedSignature,
  );
  return (nested ?? []).reduce((n, a) => n + a.values.length, 0);
}

/** The signed attribute that numbers a nested signature, as `osslsigncode sign -nest` writes it. */
export function sequenceNumberAttribute(n: number): pkijs.Attribute {
  return new pkijs.Attribute({
    type: AUTHENTICODE_OID.sequenceNumber,
    values: [new asn1js.Integer({ value: n })],
  });
}

/** What an Authenticode signature says it covers, to be compared with the file it is attached to. */
export interface SignatureCoverage {
  hash: HashName;
  contentType: string;
  /** SpcIndirectDataContent: the DER DigestInfo (algorithm and file digest); else the whole content. */
  covers: Uint8Array;
  /** The signer's certificate (DER), when the signature carries it. */
  signerCertificate: Uint8Array | undefined;
}

function coverageOf(contentType: string, content: asn1js.BaseBlock): Uint8Array {
  // SpcIndirectDataContent ::= SEQUENCE { data SpcAttributeTypeAndOptionalValue, messageDigest DigestInfo }:
  // the digest is what matters; the rest (page-hash flags, links) may differ between tool versions.
  if (contentType === AUTHENTICODE_OID.indirectData && content instanceof asn1js.Sequence) {
    const digest = content.valueBlock.value[1];
    if (digest) return new Uint8Array(digest.toBER());
  }
  return new Uint8Array(content.toBER());
}

/** The coverage of content `osslsigncode extract-data` wrote for a file. */
export function extractedCoverage(extracted: ExtractedContent): Uint8Array {
  return coverageOf(extracted.contentType, extracted.content);
}

/** Reads a detached Authenticode PKCS#7 (DER or PEM) made by `codesign sign --detached-signature`. */
export function readDetachedSignature(bytes: Uint8Array, file: string): SignatureCoverage {
  const signed = parseSignedData(bytes, file);
  const content = signed.encapContentInfo.eContent as asn1js.BaseBlock | undefined;
  const signer = signed.signerInfos[0];
  const hash = signer ? hashByOid(signer.digestAlgorithm.algorithmId) : undefined;
  if (!content || !(content instanceof asn1js.Constructed) || !signer || !hash) {
    throw new CodesignError("INVALID_INPUT", `${file} is not a detached Authenticode signature`, {
      hint: "give the PKCS#7 written by codesign sign --detached-signature (one signer, SHA-256/384/512)",
    });
  }
  let signerCertificate: Uint8Array | undefined;
  const sid = signer.sid as unknown;
  for (const c of signed.certificates ?? []) {
    if (!(c instanceof pkijs.Certificate)) continue;
    if (
      sid instanceof pkijs.IssuerAndSerialNumber &&
      c.serialNumber.isEqual(sid.serialNumber) &&
      c.issuer.isEqual(sid.issuer)
    ) {
      signerCertificate = new Uint8Array(c.toSchema().toBER());
    }
  }
  return {
    hash,
    contentType: signed.encapContentInfo.eContentType,
    covers: coverageOf(signed.encapContentInfo.eContentType, content),
    signerCertificate,
  };
}

const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_CODE_SIGNING = "1.3.6.1.5.5.7.3.3";
const OID_ANY_EKU = "2.5.29.37.0";

/**
 * Whether a certificate may sign code by its extended key usage: "no-eku" when it has none (any
 * use), "yes" when it lists codeSigning (or anyExtendedKeyUsage), "no" otherwise.
 */
export function codeSigningUsage(certDer: Uint8Array): "yes" | "no" | "no-eku" {
  const cert = pkijs.Certificate.fromBER(buf(certDer));
  const eku = cert.extensions?.find((e) => e.extnID === OID_EXT_KEY_USAGE);
  if (!eku) return "no-eku";
  try {
    const usage = pkijs.ExtKeyUsage.fromBER(eku.extnValue.valueBlock.valueHexView);
    return usage.keyPurposes.some((p) => p === OID_CODE_SIGNING || p === OID_ANY_EKU) ? "yes" : "no";
  } catch {
    return "no";
  }
}
