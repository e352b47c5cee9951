/**
 * In-process verification of what codesign makes: raw signatures and CMS SignedData (detached or
 * attached, every signer), with their embedded RFC 3161 timestamps. Content is streamed, never
 * held whole. Chains are validated by path.ts (PKI.js' engine plus what it lacks) and judged by
 * the code-signing policy (policy.ts). Anything invalid is a VERIFY_FAILED error (exit 6).
 */
import * as asn1js from "asn1js";
import {
  constants,
  createHash,
  createPublicKey,
  createVerify,
  verify as verifyOneShot,
  X509Certificate,
  type KeyObject,
} from "node:crypto";
import { createReadStream } from "node:fs";
import * as pkijs from "pkijs";
import { hashByOid, OID_RSASSA_PSS } from "./asn1.js";
import { OID } from "./cms.js";
import { loadAnchors, subjectOf, validatePath, type Anchors } from "./path.js";
import { checkPolicy, EKU, extendedKeyUsage, type VerifyPurpose } from "./policy.js";
import type { Revocation } from "./revocation.js";
import { CodesignError, isCodesignError } from "../errors.js";
import { hashFile } from "../util/hash.js";
import { assertRegularFile, readRegularFile } from "../util/files.js";
import type { HashName, SignatureScheme } from "../signer.js";

export type { VerifyPurpose } from "./policy.js";

export interface TimestampReport {
  genTime: string;
  /** The TSA's name from the token, when it gives one. */
  tsa?: string;
  /** The TSA certificate's subject. */
  signer: string;
  /** Whether the TSA chains to a trust anchor; only then is genTime used to judge certificates. */
  trusted: boolean;
}

export interface SignerReport {
  /** The signer certificate's subject. */
  signer: string;
  /** The validated path's subjects, signer first, trust anchor last. */
  chain: string[];
  /** The digest algorithm of this SignerInfo. */
  hash: string;
  /** The time the certificates were judged at: a trusted timestamp's, else the time of verifying. */
  checkedAt: string;
  timestamps: TimestampReport[];
}

export interface VerifyReport {
  valid: true;
  kind: "raw" | "cms";
  /** Raw: the scheme that verified (rsa-pkcs1 or rsa-pss when --mechanism was not given). */
  scheme?: SignatureScheme;
  signer?: string;
  /** CMS: every SignerInfo, each verified. */
  signers?: SignerReport[];
  /** Whether the signer chains to a trust anchor (false: raw with --pubkey, or --cert alone). */
  trusted: boolean;
  /** The purpose the signer certificate was checked for ("any": EKU not checked). */
  purpose?: VerifyPurpose;
  /** Raw with --cert and --ca, or CMS: the validated path (signer first). */
  chain?: string[];
  attached?: boolean;
  timestamps: TimestampReport[];
  warnings: string[];
}

const fail = (message: string, hint?: string): CodesignError =>
  new CodesignError("VERIFY_FAILED", message, hint ? { hint } : {});

/** id-ct-TSTInfo: the only content a TimeStampToken may carry (RFC 3161 §2.4.2). */
const OID_TST_INFO = "1.2.840.113549.1.9.16.1.4";
/** A genTime later than now by more than this is refused: clocks differ, but not by hours. */
export const TIMESTAMP_FUTURE_SKEW_MS = 5 * 60 * 1000;
/** A certificate or public key file larger than this is not one. */
const KEY_FILE_MAX = 1024 * 1024;

/** --mechanism must be one the key can make (exit 2 otherwise: a usage mistake, not a bad signature). */
function assertMechanismFits(mechanism: SignatureScheme | undefined, type: string | undefined): void {
  if (!mechanism) return;
  const fits =
    mechanism === "rsa-pkcs1" || mechanism === "rsa-pss"
      ? type === "rsa" || (type === "rsa-pss" && mechanism === "rsa-pss")
      : mechanism === "ecdsa"
        ? type === "ec"
        : type === "ed25519" || type === "ed448";
  if (!fits) {
    throw new CodesignError("USAGE", `--mechanism ${mechanism} does not fit a ${type ?? "unknown"} key`, {
      hint: "leave --mechanism out (the key decides), or give the key the signature was made with",
    });
  }
}

const EC_SIZES: Record<string, number> = { prime256v1: 32, secp384r1: 48, secp521r1: 66, secp256k1: 32 };
/** EdDSA verifies the whole message at once (no streaming), as signing does. */
const EDDSA_MAX_BYTES = 256 * 1024 * 1024;

export interface SigOptions {
  padding?: number;
  saltLength?: number;
  dsaEncoding?: "der" | "ieee-p1363";
}

/**
 * Streams a file once through one verifier per candidate encoding/padding and returns the index
 * of the first that verifies (-1 when none does): trying alternatives costs no second read.
 */
async function streamVerify(
  file: string,
  hash: HashName,
  key: KeyObject,
  signature: Uint8Array,
  candidates: SigOptions[],
): Promise<number> {
  const verifiers = candidates.map(() => createVerify(hash));
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) {
    for (const v of verifiers) v.update(chunk as Buffer);
  }
  return verifiers.findIndex((v, i) => v.verify({ key, ...candidates[i] }, signature));
}

/** Whether `sig` parses as exactly DER `SEQUENCE { INTEGER, INTEGER }`. */
function isDerEcdsa(sig: Uint8Array): boolean {
  const parsed = asn1js.fromBER(sig);
  if (parsed.offset !== sig.length || parsed.result.error) return false;
  const items = parsed.result instanceof asn1js.Sequence ? parsed.result.valueBlock.value : [];
  return items.length === 2 && items.every((i) => i instanceof asn1js.Integer);
}

const PKCS1: SigOptions = { padding: constants.RSA_PKCS1_PADDING };
// Verifying, the salt length is read from the signature: PSS made with any salt length passes.
const PSS_ANY_SALT: SigOptions = {
  padding: constants.RSA_PKCS1_PSS_PADDING,
  saltLength: constants.RSA_PSS_SALTLEN_AUTO,
};

/** A raw signature over `file` (as `codesign sign --tool raw` or `openssl dgst -sign` make them). */
export async function verifyRaw(
  file: string,
  signature: Uint8Array,
  key: KeyObject,
  o: { hash: HashName; mechanism?: SignatureScheme | undefined },
): Promise<VerifyReport> {
  const type = key.asymmetricKeyType;
  assertMechanismFits(o.mechanism, type);
  let scheme: SignatureScheme | undefined;
  let hint = "the file changed, or it was signed with another key or hash (--hash)";
  if (type === "ed25519" || type === "ed448") {
    if ((await assertRegularFile(file, "the file")) > EDDSA_MAX_BYTES) {
      throw new CodesignError(
        "INVALID_INPUT",
        `EdDSA verifies the whole file at once; ${file} is over 256 MiB`,
      );
    }
    const whole = await readRegularFile(file, "the file", EDDSA_MAX_BYTES);
    if (verifyOneShot(null, whole, key, signature)) scheme = "eddsa";
  } else if (type === "rsa" || type === "rsa-pss") {
    // Without --mechanism both RSA schemes are tried in the same pass over the file.
    const schemes: SignatureScheme[] =
      o.mechanism === "rsa-pss" || type === "rsa-pss"
        ? ["rsa-pss"]
        : o.mechanism === "rsa-pkcs1"
          ? ["rsa-pkcs1"]
          : ["rsa-pkcs1", "rsa-pss"];
    const i = await streamVerify(
      file,
      o.hash,
      key,
      signature,
      schemes.map((s) => (s === "rsa-pss" ? PSS_ANY_SALT : PKCS1)),
    );
    scheme = schemes[i];
  } else if (type === "ec") {
    // DER (OpenSSL) or r‖s (P1363); a signature of exactly 2×field bytes that also parses as DER
    // is ambiguous, and both readings are tried.
    const size = EC_SIZES[key.asymmetricKeyDetails?.namedCurve ?? ""] ?? 32;
    const der = isDerEcdsa(signature);
    const encodings: Array<"der" | "ieee-p1363"> =
      signature.length === 2 * size ? (der ? ["der", "ieee-p1363"] : ["ieee-p1363"]) : ["der"];
    const i = await streamVerify(
      file,
      o.hash,
      key,
      signature,
      encodings.map((dsaEncoding) => ({ dsaEncoding })),
    );
    if (i >= 0) scheme = "ecdsa";
    if (!der && signature.length !== 2 * size) hint = "the signature is neither DER nor r‖s for this curve";
  } else {
    throw new CodesignError("INVALID_INPUT", `unsupported public key type ${type}`, {
      hint: "give an RSA, EC or Ed25519 key",
    });
  }
  if (!scheme) throw fail(`the signature does not match ${file} and this key`, hint);
  return { valid: true, kind: "raw", scheme, trusted: false, timestamps: [], warnings: [] };
}

/** The public key from `--pubkey` (PEM/DER SPKI) or `--cert` (PEM/DER certificate). */
export async function publicKeyFrom(o: {
  cert?: string | undefined;
  pubkey?: string | undefined;
}): Promise<KeyObject> {
  const file = o.cert ?? o.pubkey;
  if (!file)
    throw new CodesignError("USAGE", "a raw signature needs --cert or --pubkey", {
      hint: "give the signer's certificate or public key (`codesign pubkey --key URI --out pub.pem`)",
    });
  const bytes = await readRegularFile(file, o.cert ? "the certificate" : "the public key", KEY_FILE_MAX);
  try {
    if (o.cert) return new X509Certificate(bytes).publicKey;
    return bytes[0] === 0x30
      ? createPublicKey({ key: Buffer.from(bytes), format: "der", type: "spki" })
      : createPublicKey(Buffer.from(bytes));
  } catch (cause) {
    throw new CodesignError("INVALID_INPUT", `${file} holds no ${o.cert ? "certificate" : "public key"}`, {
      hint: "give PEM or DER",
      cause,
    });
  }
}

/** Signature options for a SignerInfo's algorithm (RSA-PSS: hash and salt from its parameters). */
export function signatureOptions(
  algo: pkijs.AlgorithmIdentifier,
  digestHash: HashName,
): { hash: HashName; opts: SigOptions } {
  if (algo.algorithmId !== OID_RSASSA_PSS) return { hash: digestHash, opts: {} };
  // RFC 4055 defaults (SHA-1, salt 20) apply only when the parameters are absent.
  const params = new pkijs.RSASSAPSSParams({ schema: algo.algorithmParams });
  const hash = hashByOid(params.hashAlgorithm.algorithmId);
  if (!hash) throw fail(`RSA-PSS with an unsupported hash (${params.hashAlgorithm.algorithmId})`);
  return {
    hash,
    opts: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: params.saltLength },
  };
}

const attrValue = (si: pkijs.SignerInfo, type: string) =>
  si.signedAttrs?.attributes.find((a) => a.type === type)?.values[0];

export const certificatesOf = (signed: pkijs.SignedData): pkijs.Certificate[] =>
  (signed.certificates ?? []).filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate);

/** The certificate a SignerInfo's sid names, among those the SignedData carries. */
/** The certificate a SignerInfo's sid names (issuer and serial, or subject key id) among those the SignedData carries. */
export function findSignerCertificate(
  signed: pkijs.SignedData,
  si: pkijs.SignerInfo,
): pkijs.Certificate | undefined {
  const sid = si.sid as unknown;
  return certificatesOf(signed).find((c) =>
    sid instanceof pkijs.IssuerAndSerialNumber
      ? c.serialNumber.isEqual(sid.serialNumber) &&
        Buffer.from(c.issuer.toSchema().toBER()).equals(Buffer.from(sid.issuer.toSchema().toBER()))
      : sid instanceof asn1js.Constructed || sid instanceof asn1js.Primitive
        ? subjectKeyIdMatches(c, sid)
        : false,
  );
}

function signerCertificate(signed: pkijs.SignedData, si: pkijs.SignerInfo): pkijs.Certificate {
  const cert = findSignerCertificate(signed, si);
  if (!cert)
    throw fail(
      "the signer's certificate is not in the signature",
      "sign with the certificate included (codesign does by default)",
    );
  return cert;
}

/**
 * Checks one SignerInfo: the content digest against messageDigest, the contentType attribute,
 * and the signature with the signer certificate's key. `content` is the content itself or a file
 * to stream. Returns the signer certificate.
 */
export async function checkSignerInfo(
  signed: pkijs.SignedData,
  si: pkijs.SignerInfo,
  hash: HashName,
  digest: Uint8Array,
  content: Uint8Array | string,
): Promise<pkijs.Certificate> {
  const sig = new Uint8Array(si.signature.valueBlock.valueHexView);
  const signerCert = signerCertificate(signed, si);
  // The key from the certificate's SubjectPublicKeyInfo as it was read (encoding the whole
  // certificate again only to take its key out would cost more than the check).
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({
      key: Buffer.from(signerCert.subjectPublicKeyInfo.toSchema().toBER()),
      format: "der",
      type: "spki",
    });
  } catch (e) {
    throw fail(`the signer's certificate holds no usable public key (${(e as Error).message})`);
  }
  const { hash: sigHash, opts } = signatureOptions(si.signatureAlgorithm, hash);
  const key = { key: publicKey, ...opts };

  let ok: boolean;
  if (si.signedAttrs) {
    const md = attrValue(si, OID.messageDigest)?.valueBlock?.valueHexView as Uint8Array | undefined;
    if (!md) throw fail("the signed attributes hold no messageDigest");
    if (!Buffer.from(md).equals(Buffer.from(digest))) {
      throw fail(
        `the content does not match the signature (message digest differs)`,
        "the file changed after it was signed, or this is another file's signature",
      );
    }
    const ct = attrValue(si, OID.contentType);
    if (!(ct instanceof asn1js.ObjectIdentifier) || ct.getValue() !== signed.encapContentInfo.eContentType) {
      throw fail("the signed contentType attribute does not match the content type");
    }
    // What was signed: the attributes as a SET (RFC 5652 §5.4), not as the [0] field.
    const signedBytes = new Uint8Array(si.signedAttrs.encodedValue.slice(0));
    signedBytes[0] = 0x31;
    const edwards = publicKey.asymmetricKeyType?.startsWith("ed");
    ok = verifyOneShot(edwards ? null : sigHash, signedBytes, key, sig);
  } else if (typeof content !== "string") {
    ok = verifyOneShot(sigHash, content, key, sig);
  } else {
    ok = (await streamVerify(content, sigHash, publicKey, sig, [opts])) === 0;
  }
  if (!ok)
    throw fail(
      `the CMS signature of ${subjectOf(signerCert)} does not verify with its certificate's key`,
      "the signature was altered, or the wrong certificate is embedded",
    );
  return signerCert;
}

/** SignerIdentifier [0] SubjectKeyIdentifier against the certificate's extension. */
function subjectKeyIdMatches(c: pkijs.Certificate, sid: asn1js.BaseBlock): boolean {
  const ext = c.extensions?.find((e) => e.extnID === "2.5.29.14");
  if (!ext) return false;
  const ski = (ext.parsedValue as asn1js.OctetString | undefined)?.valueBlock.valueHexView;
  const wanted = (sid as asn1js.Primitive).valueBlock.valueHexView;
  return ski !== undefined && Buffer.from(ski).equals(Buffer.from(wanted));
}

export interface CheckedTimestamp {
  tst: pkijs.TSTInfo;
  /** The TSA's certificate and the certificates the token carries. */
  cert: pkijs.Certificate;
  certs: pkijs.Certificate[];
}

/**
 * Checks a TimeStampToken: a SignedData over id-ct-TSTInfo with one signer, its imprint is over
 * `signature`, its genTime not in the future, the TSA's signature verifies, and the TSA
 * certificate has the timeStamping EKU. The chain is the caller's (the anchors differ). Plain
 * Errors, for the caller to word.
 */
export async function inspectTimestampToken(
  token: pkijs.ContentInfo,
  signature: Uint8Array,
  now: Date = new Date(),
): Promise<CheckedTimestamp> {
  if (token.contentType !== OID.signedData) throw new Error("the timestamp token is not a SignedData");
  const signed = new pkijs.SignedData({ schema: token.content });
  if (signed.encapContentInfo.eContentType !== OID_TST_INFO) {
    throw new Error(
      `the timestamp token's content is not a TSTInfo (eContentType ${signed.encapContentInfo.eContentType})`,
    );
  }
  if (signed.signerInfos.length !== 1) throw new Error("a timestamp token has exactly one signer");
  const eContent = signed.encapContentInfo.eContent;
  if (!eContent) throw new Error("the timestamp token has no TSTInfo");
  const tstDer = new Uint8Array(eContent.getValue());
  const tst = pkijs.TSTInfo.fromBER(tstDer.slice().buffer);
  if (tst.genTime.getTime() > now.getTime() + TIMESTAMP_FUTURE_SKEW_MS) {
    throw new Error(`the timestamp's genTime ${tst.genTime.toISOString()} is in the future`);
  }
  const name = hashByOid(tst.messageImprint.hashAlgorithm.algorithmId);
  if (!name)
    throw new Error(
      `the timestamp's imprint uses an unsupported hash (${tst.messageImprint.hashAlgorithm.algorithmId})`,
    );
  const expected = createHash(name).update(signature).digest();
  if (!Buffer.from(tst.messageImprint.hashedMessage.valueBlock.valueHexView).equals(expected)) {
    throw new Error("the timestamp is for other data (its message imprint does not match the signature)");
  }
  const si = signed.signerInfos[0] as pkijs.SignerInfo;
  const hash = hashByOid(si.digestAlgorithm.algorithmId);
  if (!hash) throw new Error("the timestamp's signer uses an unsupported digest");
  let cert: pkijs.Certificate;
  try {
    cert = await checkSignerInfo(
      signed,
      si,
      hash,
      new Uint8Array(createHash(hash).update(tstDer).digest()),
      tstDer,
    );
  } catch (e) {
    throw new Error(`the TSA's signature on the timestamp does not verify (${(e as Error).message})`);
  }
  // RFC 3161 §2.3: a TSA certificate has the timeStamping extended key usage.
  if (!(extendedKeyUsage(cert) ?? []).includes(EKU.timeStamping)) {
    throw new Error(`the TSA certificate (${subjectOf(cert)}) is not for timestamping`);
  }
  return { tst, cert, certs: certificatesOf(signed) };
}

/** {@link inspectTimestampToken}, returning the TSTInfo. */
export async function checkTimestampToken(
  token: pkijs.ContentInfo,
  signature: Uint8Array,
): Promise<pkijs.TSTInfo> {
  return (await inspectTimestampToken(token, signature)).tst;
}

/**
 * A TSA's chain: validated to `anchors` at the genTime and judged for timeStamping. Returns the
 * path; throws VERIFY_FAILED naming the problem.
 */
export async function validateTsaChain(
  ts: CheckedTimestamp,
  anchors: Anchors,
  revocation?: Revocation,
): Promise<pkijs.Certificate[]> {
  const path = await validatePath(ts.cert, ts.certs, anchors, {
    at: ts.tst.genTime,
    what: "TSA",
    revocation,
  });
  checkPolicy(path, "timestamping");
  return path;
}

/** The TSA's name from a TSTInfo (a directoryName, a URI or a DNS name), when present. */
export function tsaName(tst: pkijs.TSTInfo): string | undefined {
  const v: unknown = tst.tsa?.value;
  if (v === undefined) return undefined;
  if (v instanceof pkijs.RelativeDistinguishedNames)
    return v.typesAndValues.map((t) => `${t.type}=${String(t.value.valueBlock.value)}`).join(", ");
  return String(v);
}

export interface CmsVerifyOptions {
  /** --ca files; empty: the system store. */
  ca: readonly string[];
  purpose?: VerifyPurpose | undefined;
  crls?: pkijs.CertificateRevocationList[] | undefined;
  /** CRL files and online checks (revocation.ts); when given, `crls` is not used. */
  revocation?: Revocation | undefined;
  /** The time of verifying (tests). */
  now?: Date | undefined;
}

/** Anything a hostile structure makes PKI.js or asn1js throw is a signature that does not verify. */
function malformed(e: unknown): never {
  if (isCodesignError(e)) throw e;
  throw new CodesignError(
    "VERIFY_FAILED",
    `the signature is malformed: ${(e as Error).message ?? String(e)}`,
    {
      hint: "a damaged or crafted signature never verifies",
      cause: e,
    },
  );
}

/**
 * Verifies a CMS SignedData: every SignerInfo must verify, chain to a trust anchor and meet the
 * code-signing policy. `contentFile`: the signed file of a detached signature; for an attached
 * one, when given, it must be the embedded content.
 */
export async function verifyCms(
  signed: pkijs.SignedData,
  contentFile: string | undefined,
  o: CmsVerifyOptions,
): Promise<VerifyReport> {
  try {
    return await verifyCmsInner(signed, contentFile, o);
  } catch (e) {
    return malformed(e);
  }
}

async function verifyCmsInner(
  signed: pkijs.SignedData,
  contentFile: string | undefined,
  o: CmsVerifyOptions,
): Promise<VerifyReport> {
  const now = o.now ?? new Date();
  const purpose = o.purpose ?? "code-signing";
  if (signed.signerInfos.length === 0) throw fail("the CMS holds no signer");
  if (signed.encapContentInfo.eContentType === OID_TST_INFO) {
    throw fail("this is an RFC 3161 timestamp token, not a code signature");
  }
  const eContent = signed.encapContentInfo.eContent;
  const attached = eContent !== undefined;
  if (!attached && contentFile === undefined) {
    throw new CodesignError("USAGE", "this CMS signature is detached: name the signed file", {
      hint: "codesign verify --in FILE --signature FILE.p7s",
    });
  }
  const content = attached ? new Uint8Array(eContent.getValue()) : undefined;
  if (content && contentFile !== undefined) {
    const inFile = await hashFile(contentFile, "sha256");
    if (!Buffer.from(inFile).equals(createHash("sha256").update(content).digest())) {
      throw fail(
        `${contentFile} is not the content embedded in this attached signature`,
        "verify the attached signature alone: codesign verify --in FILE.p7s",
      );
    }
  }

  const anchors = await loadAnchors(o.ca);
  let tsaAnchors: Anchors | undefined;
  // Public TSAs chain to the system store, a private one to a --ca file: both are asked.
  const getTsaAnchors = async (): Promise<Anchors> => {
    if (!tsaAnchors) {
      const system = o.ca.length > 0 ? await loadAnchors([]) : anchors;
      tsaAnchors =
        system === anchors
          ? anchors
          : { certs: [...anchors.certs, ...system.certs], source: `${anchors.source}, ${system.source}` };
    }
    return tsaAnchors;
  };
  const warnings: string[] = [];
  const signers: SignerReport[] = [];
  const revocation = o.revocation ?? (o.crls ? { crls: o.crls } : undefined);
  const digests = new Map<HashName, Uint8Array>();

  for (const [index, si] of signed.signerInfos.entries()) {
    const which =
      signed.signerInfos.length > 1 ? ` (signer ${index + 1} of ${signed.signerInfos.length})` : "";
    const hash = hashByOid(si.digestAlgorithm.algorithmId);
    if (!hash) throw fail(`unsupported digest algorithm ${si.digestAlgorithm.algorithmId}${which}`);
    let digest = digests.get(hash);
    if (!digest) {
      digest = content
        ? new Uint8Array(createHash(hash).update(content).digest())
        : await hashFile(contentFile as string, hash);
      digests.set(hash, digest);
    }
    const cert = await withContext(which, () =>
      checkSignerInfo(signed, si, hash, digest, content ?? (contentFile as string)),
    );
    const sig = new Uint8Array(si.signature.valueBlock.valueHexView);

    const timestamps: TimestampReport[] = [];
    let trustedTime: Date | undefined;
    for (const attr of si.unsignedAttrs?.attributes ?? []) {
      if (attr.type !== OID.timeStampToken) continue;
      let ts: CheckedTimestamp;
      try {
        ts = await inspectTimestampToken(new pkijs.ContentInfo({ schema: attr.values[0] }), sig, now);
      } catch (e) {
        throw fail(`the embedded timestamp is invalid${which}: ${(e as Error).message}`);
      }
      let trusted = true;
      try {
        await validateTsaChain(ts, await getTsaAnchors(), revocation);
      } catch (e) {
        trusted = false;
        warnings.push(
          `the timestamp's TSA is not trusted${which} (${(e as Error).message}); its time is reported but not relied on`,
        );
      }
      if (trusted) trustedTime ??= ts.tst.genTime;
      const name = tsaName(ts.tst);
      timestamps.push({
        genTime: ts.tst.genTime.toISOString(),
        ...(name ? { tsa: name } : {}),
        signer: subjectOf(ts.cert),
        trusted,
      });
    }
    // The certificates are judged at the trusted signing time, else now.
    const at = trustedTime ?? now;
    const path = await withContext(which, async () => {
      const p = await validatePath(cert, certificatesOf(signed), anchors, {
        at,
        what: "signer",
        revocation,
      });
      for (const w of checkPolicy(p, purpose)) if (!warnings.includes(w)) warnings.push(w);
      return p;
    });
    signers.push({
      signer: subjectOf(cert),
      chain: path.map(subjectOf),
      hash,
      checkedAt: at.toISOString(),
      timestamps,
    });
  }
  const first = signers[0] as SignerReport;
  return {
    valid: true,
    kind: "cms",
    signer: first.signer,
    signers,
    trusted: true,
    purpose,
    chain: first.chain,
    attached,
    timestamps: signers.flatMap((s) => s.timestamps),
    warnings,
  };
}

/** Adds "(signer 2 of 2)" to a failure's message, when there are several signers. */
async function withContext<T>(which: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (which && isCodesignError(e))
      throw new CodesignError(e.code, `${e.message}${which}`, { hint: e.hint ?? "", cause: e });
    throw e;
  }
}

export interface CertificateJudgement {
  signer: string;
  trusted: boolean;
  chain?: string[];
  warnings: string[];
}

/**
 * Raw signatures: the --cert's certificate (`others`: the rest of its file, intermediates) chained to the --ca anchors and judged by the policy;
 * without --ca it is checked for dates and purpose only and reported as not chained.
 */
export async function judgeSignerCertificate(
  der: Uint8Array,
  others: readonly Uint8Array[],
  ca: readonly string[],
  purpose: VerifyPurpose,
  revocation?: Revocation | pkijs.CertificateRevocationList[],
  now: Date = new Date(),
): Promise<CertificateJudgement> {
  try {
    const cert = pkijs.Certificate.fromBER(der);
    if (ca.length > 0) {
      const path = await validatePath(
        cert,
        others.map((d) => pkijs.Certificate.fromBER(d)),
        await loadAnchors(ca),
        {
          at: now,
          what: "signer",
          revocation: Array.isArray(revocation) ? { crls: revocation } : revocation,
        },
      );
      return {
        signer: subjectOf(cert),
        trusted: true,
        chain: path.map(subjectOf),
        warnings: checkPolicy(path, purpose),
      };
    }
    if (cert.notBefore.value > now || cert.notAfter.value < now) {
      throw fail(
        `the signer certificate ${subjectOf(cert)} is not valid at ${now.toISOString()} (valid ${cert.notBefore.value.toISOString()} to ${cert.notAfter.value.toISOString()})`,
      );
    }
    const warnings = checkPolicy([cert], purpose);
    warnings.push("the signer certificate is not chained to a trust anchor (give --ca to chain it)");
    if (revocation && (Array.isArray(revocation) || revocation.online || (revocation.crls ?? []).length > 0))
      warnings.push(
        "revocation was not checked: a certificate not chained to an issuer has no revocation status",
      );
    return { signer: subjectOf(cert), trusted: false, warnings };
  } catch (e) {
    return malformed(e);
  }
}
