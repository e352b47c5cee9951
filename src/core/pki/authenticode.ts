/**
 * Authenticode (Microsoft's PKCS#7 profile for PE, MSI, CAB, CAT, APPX and scripts), pure bytes.
 * The file-specific part — the SpcIndirectDataContent holding the file's digest — comes from
 * `osslsigncode extract-data`; this module reads it and makes the Authenticode signed attributes.
 * The rest is ordinary CMS (./cms.ts): the token signs the signed attributes, whose
 * messageDigest covers the content octets of the SpcIndirectDataContent.
 * Verifying, each signature of a file (the primary and every nested one) is judged here by the
 * same path validation and code-signing policy as a CMS signer (path.ts, policy.ts, verify.ts).
 */
import * as asn1js from "asn1js";
import { createHash, verify as verifySignature, X509Certificate } from "node:crypto";
import * as pkijs from "pkijs";
import { CodesignError, isCodesignError } from "../errors.js";
import type { HashName } from "../signer.js";
import { hashByOid } from "./asn1.js";
import { OID, parseSignedData } from "./cms.js";
import { certDer, subjectOf, validatePath, type Anchors } from "./path.js";
import { checkPolicy, type VerifyPurpose } from "./policy.js";
import type { Revocation } from "./revocation.js";
import {
  certificatesOf,
  checkSignerInfo,
  findSignerCertificate,
  inspectTimestampToken,
  signatureOptions,
  TIMESTAMP_FUTURE_SKEW_MS,
  tsaName,
  validateTsaChain,
  type CheckedTimestamp,
  type TimestampReport,
} from "./verify.js";

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
  /** Every certificate the signature carries (DER). */
  certificates: Uint8Array[];
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
    certificates: (signed.certificates ?? [])
      .filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate)
      .map((c) => new Uint8Array(c.toSchema().toBER())),
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

/** PKCS#9 countersignature: the unsigned attribute of a legacy Authenticode timestamp. */
const OID_COUNTERSIGNATURE = "1.2.840.113549.1.9.6";
const OID_SIGNING_TIME = "1.2.840.113549.1.9.5";
/** A catalog's content type (certificate trust list): signed like SpcIndirectDataContent. */
const OID_CTL = "1.3.6.1.4.1.311.10.1";
/** Nested signatures deeper than this, or more of them than this, are refused, not walked. */
const MAX_NESTING_DEPTH = 4;
const MAX_SIGNATURES = 32;

const failed = (message: string, hint?: string): CodesignError =>
  new CodesignError("VERIFY_FAILED", message, hint ? { hint } : {});

/**
 * The primary signature, then every signature nested in an SPC_NESTED_SIGNATURE unsigned
 * attribute, depth first: the order osslsigncode numbers them in ("Signature Index: N").
 */
export function authenticodeSignatures(primary: pkijs.SignedData): pkijs.SignedData[] {
  const out: pkijs.SignedData[] = [];
  const walk = (signed: pkijs.SignedData, depth: number): void => {
    out.push(signed);
    if (out.length > MAX_SIGNATURES) {
      throw failed(`the file carries more than ${MAX_SIGNATURES} Authenticode signatures: not judged`);
    }
    for (const si of signed.signerInfos) {
      for (const attr of si.unsignedAttrs?.attributes ?? []) {
        if (attr.type !== AUTHENTICODE_OID.nestedSignature) continue;
        if (depth >= MAX_NESTING_DEPTH) {
          throw failed(`Authenticode signatures nested more than ${MAX_NESTING_DEPTH} deep: not judged`);
        }
        for (const v of attr.values as asn1js.BaseBlock[]) {
          const info = new pkijs.ContentInfo({ schema: v });
          if (info.contentType !== OID.signedData) {
            throw failed(`a nested Authenticode signature is not a SignedData (${info.contentType})`);
          }
          walk(new pkijs.SignedData({ schema: info.content }), depth + 1);
        }
      }
    }
  };
  walk(primary, 0);
  return out;
}

export interface AuthenticodeJudgeOptions {
  /** The signers' trust anchors (the --ca files, else the system store). */
  anchors: Anchors;
  /** The TSAs' trust anchors, asked for only when a signature is timestamped. */
  tsaAnchors: () => Promise<Anchors>;
  purpose: VerifyPurpose;
  /** CRL files and online checks for every chain (one object per verification: revocation.ts). */
  revocation?: Revocation | undefined;
  now?: Date | undefined;
}

export interface AuthenticodeSignatureJudgement {
  /** 0: the primary signature; 1…: nested ones, in osslsigncode's order. */
  index: number;
  signer: string;
  /** The signer certificate (DER). */
  certificate: Uint8Array;
  hash: HashName;
  /** The validated path's subjects, signer first, trust anchor last. */
  chain: string[];
  /** The time the certificates were judged at: a trusted timestamp's, else the time of verifying. */
  checkedAt: string;
  timestamps: TimestampReport[];
  warnings: string[];
}

/** A time attribute's value (UTCTime or GeneralizedTime). */
function timeOf(v: unknown): Date | undefined {
  return v instanceof asn1js.UTCTime || v instanceof asn1js.GeneralizedTime ? v.toDate() : undefined;
}

/**
 * A legacy Authenticode timestamp: a PKCS#9 countersignature (a SignerInfo over the signer's
 * encryptedDigest) with a signingTime. Its signature must verify with the countersigner's
 * certificate (carried in the signature's certificates); its chain is the caller's.
 */
async function inspectCountersignature(
  signed: pkijs.SignedData,
  csi: pkijs.SignerInfo,
  signature: Uint8Array,
  now: Date,
): Promise<CheckedTimestampLike> {
  const hash = hashByOid(csi.digestAlgorithm.algorithmId);
  if (!hash) throw new Error(`it uses an unsupported digest (${csi.digestAlgorithm.algorithmId})`);
  if (!csi.signedAttrs) throw new Error("it has no signed attributes, so no signing time");
  const attr = (type: string): unknown =>
    csi.signedAttrs?.attributes.find((a) => a.type === type)?.values[0] as unknown;
  const md = attr(OID.messageDigest);
  if (!(md instanceof asn1js.OctetString)) throw new Error("it holds no messageDigest");
  if (!Buffer.from(md.valueBlock.valueHexView).equals(createHash(hash).update(signature).digest())) {
    throw new Error("it countersigns other data (its messageDigest is not over this signature)");
  }
  const time = timeOf(attr(OID_SIGNING_TIME));
  if (!time) throw new Error("it holds no signingTime");
  if (time.getTime() > now.getTime() + TIMESTAMP_FUTURE_SKEW_MS) {
    throw new Error(`its signingTime ${time.toISOString()} is in the future`);
  }
  const cert = findSignerCertificate(signed, csi);
  if (!cert) throw new Error("the countersigner's certificate is not in the signature");
  const { hash: sigHash, opts } = signatureOptions(csi.signatureAlgorithm, hash);
  const key = new X509Certificate(certDer(cert)).publicKey;
  // What was signed: the attributes as a SET (RFC 5652 §5.4), not as the [0] field.
  const signedBytes = new Uint8Array(csi.signedAttrs.encodedValue.slice(0));
  signedBytes[0] = 0x31;
  const edwards = key.asymmetricKeyType?.startsWith("ed");
  const sig = new Uint8Array(csi.signature.valueBlock.valueHexView);
  if (!verifySignature(edwards ? null : sigHash, signedBytes, { key, ...opts }, sig)) {
    throw new Error(`the countersignature of ${subjectOf(cert)} does not verify with its certificate's key`);
  }
  const certs = certificatesOf(signed);
  return {
    time,
    cert,
    certs,
    tsa: undefined,
    // validateTsaChain's two steps, at the countersignature's signingTime.
    chain: async (anchors, revocation) => {
      const path = await validatePath(cert, certs, anchors, { at: time, what: "TSA", revocation });
      checkPolicy(path, "timestamping");
      return path;
    },
  };
}

/** A checked timestamp of either kind: its time, its TSA, and how to chain that TSA. */
interface CheckedTimestampLike {
  time: Date;
  cert: pkijs.Certificate;
  certs: pkijs.Certificate[];
  tsa: string | undefined;
  /** Validates the TSA's path to `anchors` at `time` and judges it for timeStamping. */
  chain(anchors: Anchors, revocation?: Revocation): Promise<pkijs.Certificate[]>;
}

/**
 * Judges one Authenticode signature by codesign's own rules, as a CMS signer is judged: the
 * SignerInfo's messageDigest over the signed content and its signature with the signer's
 * certificate; its timestamps (RFC 3161 token, or a legacy countersignature) checked and their
 * TSA chained for timeStamping; the signer's path validated to the anchors at the trusted
 * timestamp's time (else now), and the code-signing policy applied. That the content's digest is
 * the file's is osslsigncode's check, made beside this one. Throws VERIFY_FAILED naming the
 * signature (index and signer) and the reason.
 */
export async function judgeAuthenticodeSignature(
  signed: pkijs.SignedData,
  index: number,
  o: AuthenticodeJudgeOptions,
): Promise<AuthenticodeSignatureJudgement> {
  let which = `signature ${index}`;
  const now = o.now ?? new Date();
  try {
    if (signed.signerInfos.length !== 1) {
      throw failed(
        `an Authenticode signature has exactly one signer; this one has ${signed.signerInfos.length}`,
      );
    }
    const si = signed.signerInfos[0] as pkijs.SignerInfo;
    const named = findSignerCertificate(signed, si);
    if (named) which = `signature ${index} (${subjectOf(named)})`;
    const type = signed.encapContentInfo.eContentType;
    if (type !== AUTHENTICODE_OID.indirectData && type !== OID_CTL) {
      throw failed(`its content is not Authenticode's (content type ${type})`);
    }
    const content = signed.encapContentInfo.eContent as asn1js.BaseBlock | undefined;
    if (!(content instanceof asn1js.Constructed)) throw failed("it carries no signed content");
    if (!si.signedAttrs) throw failed("it has no signed attributes (Authenticode requires them)");
    const hash = hashByOid(si.digestAlgorithm.algorithmId);
    if (!hash) throw failed(`unsupported digest algorithm ${si.digestAlgorithm.algorithmId}`);
    const octets = new Uint8Array(content.valueBlock.toBER());
    const digest = new Uint8Array(createHash(hash).update(octets).digest());
    const cert = await checkSignerInfo(signed, si, hash, digest, octets);
    const sig = new Uint8Array(si.signature.valueBlock.valueHexView);

    const warnings: string[] = [];
    const timestamps: TimestampReport[] = [];
    let trustedTime: Date | undefined;
    for (const attr of si.unsignedAttrs?.attributes ?? []) {
      let ts: CheckedTimestampLike;
      if (attr.type === AUTHENTICODE_OID.rfc3161Timestamp || attr.type === OID.timeStampToken) {
        let checked: CheckedTimestamp;
        try {
          checked = await inspectTimestampToken(new pkijs.ContentInfo({ schema: attr.values[0] }), sig, now);
        } catch (e) {
          throw failed(`its RFC 3161 timestamp is invalid: ${(e as Error).message}`);
        }
        ts = {
          time: checked.tst.genTime,
          cert: checked.cert,
          certs: checked.certs,
          tsa: tsaName(checked.tst),
          // The TSA's chain as CMS timestamps are chained.
          chain: (anchors, revocation) => validateTsaChain(checked, anchors, revocation),
        };
      } else if (attr.type === OID_COUNTERSIGNATURE) {
        try {
          ts = await inspectCountersignature(
            signed,
            new pkijs.SignerInfo({ schema: attr.values[0] }),
            sig,
            now,
          );
        } catch (e) {
          throw failed(`its legacy (countersignature) timestamp is invalid: ${(e as Error).message}`);
        }
      } else continue;
      let trusted = true;
      try {
        await ts.chain(await o.tsaAnchors(), o.revocation);
      } catch (e) {
        trusted = false;
        warnings.push(
          `${which}: the timestamp's TSA is not trusted (${(e as Error).message}); its time is reported but not relied on`,
        );
      }
      if (trusted) trustedTime ??= ts.time;
      timestamps.push({
        genTime: ts.time.toISOString(),
        ...(ts.tsa ? { tsa: ts.tsa } : {}),
        signer: subjectOf(ts.cert),
        trusted,
      });
    }
    const at = trustedTime ?? now;
    const path = await validatePath(cert, certificatesOf(signed), o.anchors, {
      at,
      what: "signer",
      revocation: o.revocation,
    });
    warnings.push(...checkPolicy(path, o.purpose));
    return {
      index,
      signer: subjectOf(cert),
      certificate: certDer(cert),
      hash,
      chain: path.map(subjectOf),
      checkedAt: at.toISOString(),
      timestamps,
      warnings,
    };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new CodesignError("VERIFY_FAILED", `Authenticode ${which}: ${message}`, {
      hint:
        (isCodesignError(e) ? e.hint : undefined) ??
        "every signature (the primary and each nested one) must meet the code-signing policy",
      cause: e,
    });
  }
}
