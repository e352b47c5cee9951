/**
 * In-process verification of what codesign makes: raw signatures and CMS SignedData (detached or
 * attached), with their embedded RFC 3161 timestamps. Content is streamed, never held whole.
 * Anything invalid is a VERIFY_FAILED error (exit 6) saying why.
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
import { readFile, stat } from "node:fs/promises";
import tls from "node:tls";
import * as pkijs from "pkijs";
import { hashByOid, OID_RSASSA_PSS } from "./asn1.js";
import { readCertificates } from "./certificate.js";
import { OID } from "./cms.js";
import { CodesignError } from "../errors.js";
import { hashFile } from "../util/hash.js";
import type { HashName, SignatureScheme } from "../signer.js";

export interface TimestampReport {
  genTime: string;
  /** The TSA's name from the token, when it gives one. */
  tsa?: string;
  /** The TSA certificate's subject. */
  signer: string;
  /** Whether the TSA chains to a trust anchor; only then is genTime used to judge certificates. */
  trusted: boolean;
}

export interface VerifyReport {
  valid: true;
  kind: "raw" | "cms";
  /** Raw: the scheme that verified (rsa-pkcs1 or rsa-pss when --mechanism was not given). */
  scheme?: SignatureScheme;
  signer?: string;
  attached?: boolean;
  timestamps: TimestampReport[];
  warnings: string[];
}

const fail = (message: string, hint?: string): CodesignError =>
  new CodesignError("VERIFY_FAILED", message, hint ? { hint } : {});

const OID_CODE_SIGNING = "1.3.6.1.5.5.7.3.3";
const OID_TIME_STAMPING = "1.3.6.1.5.5.7.3.8";
const EC_SIZES: Record<string, number> = { prime256v1: 32, secp384r1: 48, secp521r1: 66, secp256k1: 32 };
/** EdDSA verifies the whole message at once (no streaming), as signing does. */
const EDDSA_MAX_BYTES = 256 * 1024 * 1024;

const subjectOf = (c: X509Certificate): string => c.subject.replace(/\n/g, ", ");

interface VerifyOptions {
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
  candidates: VerifyOptions[],
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

const PKCS1: VerifyOptions = { padding: constants.RSA_PKCS1_PADDING };
// Verifying, the salt length is read from the signature: PSS made with any salt length passes.
const PSS_ANY_SALT: VerifyOptions = {
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
  let scheme: SignatureScheme | undefined;
  let hint = "the file changed, or it was signed with another key or hash (--hash)";
  if (type === "ed25519" || type === "ed448") {
    if ((await stat(file)).size > EDDSA_MAX_BYTES) {
      throw new CodesignError(
        "INVALID_INPUT",
        `EdDSA verifies the whole file at once; ${file} is over 256 MiB`,
      );
    }
    if (verifyOneShot(null, await readFile(file), key, signature)) scheme = "eddsa";
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
  return { valid: true, kind: "raw", scheme, timestamps: [], warnings: [] };
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
  const bytes = await readFile(file).catch((cause: NodeJS.ErrnoException) => {
    throw new CodesignError("INVALID_INPUT", `cannot read ${file}: ${cause.code ?? cause.message}`, {
      hint: "check the path",
      cause,
    });
  });
  try {
    if (o.cert) return new X509Certificate(bytes).publicKey;
    return bytes[0] === 0x30
      ? createPublicKey({ key: bytes, format: "der", type: "spki" })
      : createPublicKey(bytes);
  } catch (cause) {
    throw new CodesignError("INVALID_INPUT", `${file} holds no ${o.cert ? "certificate" : "public key"}`, {
      hint: "give PEM or DER",
      cause,
    });
  }
}

const x509 = (c: pkijs.Certificate): X509Certificate =>
  new X509Certificate(Buffer.from(c.toSchema().toBER()));

/** Trust anchors: the --ca files (PEM with one or more certificates, or DER). */
async function caCertificates(caFiles: string[]): Promise<X509Certificate[]> {
  const out: X509Certificate[] = [];
  for (const f of caFiles) for (const der of await readCertificates(f)) out.push(new X509Certificate(der));
  return out;
}

const systemRoots = (): X509Certificate[] => tls.rootCertificates.map((pem) => new X509Certificate(pem));

/** Trust anchors: --ca files, else the system store. */
export async function trustAnchors(caFiles: string[]): Promise<X509Certificate[]> {
  return caFiles.length === 0 ? systemRoots() : caCertificates(caFiles);
}

/**
 * Walks from `leaf` through the included certificates to an anchor, each certificate valid at
 * `at` and every issuer a CA. Throws VERIFY_FAILED naming the first problem.
 */
function checkChain(
  leaf: X509Certificate,
  included: X509Certificate[],
  anchors: X509Certificate[],
  at: Date,
  what: string,
): void {
  let current = leaf;
  for (let depth = 0; depth < 10; depth++) {
    const from = new Date(current.validFrom);
    const to = new Date(current.validTo);
    if (at < from || at > to) {
      throw fail(
        `the certificate ${subjectOf(current)} is not valid at ${at.toISOString()} (valid ${from.toISOString()} to ${to.toISOString()})`,
        "a trusted timestamp from the signing time keeps a signature valid after its certificate expires",
      );
    }
    if (anchors.some((a) => a.fingerprint256 === current.fingerprint256)) return;
    const issued = (c: X509Certificate) =>
      c.fingerprint256 !== current.fingerprint256 && current.checkIssued(c) && current.verify(c.publicKey);
    // An anchor is trusted as given (old roots lack basicConstraints); intermediates must be CAs.
    if (anchors.some((a) => issued(a))) return;
    const next = included.find((c) => c.ca && issued(c));
    if (!next) break;
    current = next;
  }
  throw fail(
    `the ${what} certificate (${subjectOf(leaf)}) does not chain to a trusted CA`,
    "give the issuing CA with --ca FILE (the system trust store is used without it)",
  );
}

/** Signature options for a SignerInfo's algorithm (RSA-PSS: hash and salt from its parameters). */
function signatureOptions(
  algo: pkijs.AlgorithmIdentifier,
  digestHash: HashName,
): { hash: HashName; opts: VerifyOptions } {
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

/**
 * Checks the first SignerInfo: the content digest against messageDigest, and the signature with
 * the embedded signer certificate's key. `content` is the content itself or a file to stream.
 */
async function checkSignerInfo(
  signed: pkijs.SignedData,
  hash: HashName,
  digest: Uint8Array,
  content: Uint8Array | string,
): Promise<{ cert: X509Certificate; certs: X509Certificate[] }> {
  const si = signed.signerInfos[0];
  if (!si) throw fail("the CMS holds no signer");
  if (signed.signerInfos.length > 1) throw fail("the CMS holds more than one signer; codesign checks one");
  const sig = new Uint8Array(si.signature.valueBlock.valueHexView);
  const certs = (signed.certificates ?? []).filter(
    (c): c is pkijs.Certificate => c instanceof pkijs.Certificate,
  );
  const sid = si.sid as unknown;
  const signerCert = certs.find((c) =>
    sid instanceof pkijs.IssuerAndSerialNumber
      ? c.serialNumber.isEqual(sid.serialNumber) &&
        Buffer.from(c.issuer.toSchema().toBER()).equals(Buffer.from(sid.issuer.toSchema().toBER()))
      : sid instanceof asn1js.Constructed || sid instanceof asn1js.Primitive
        ? subjectKeyIdMatches(c, sid)
        : false,
  );
  if (!signerCert)
    throw fail(
      "the signer's certificate is not in the signature",
      "sign with the certificate included (codesign does by default)",
    );
  const cert = x509(signerCert);
  const { hash: sigHash, opts } = signatureOptions(si.signatureAlgorithm, hash);
  const key = { key: cert.publicKey, ...opts };

  let ok: boolean;
  if (si.signedAttrs) {
    const md = attrValue(si, OID.messageDigest)?.valueBlock?.valueHexView as Uint8Array | undefined;
    if (!md || !Buffer.from(md).equals(Buffer.from(digest))) {
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
    const edwards = cert.publicKey.asymmetricKeyType?.startsWith("ed");
    ok = verifyOneShot(edwards ? null : sigHash, signedBytes, key, sig);
  } else if (typeof content !== "string") {
    ok = verifyOneShot(sigHash, content, key, sig);
  } else {
    ok = (await streamVerify(content, sigHash, cert.publicKey, sig, [opts])) === 0;
  }
  if (!ok)
    throw fail(
      "the CMS signature does not verify with the signer certificate's key",
      "the signature was altered, or the wrong certificate is embedded",
    );
  return { cert, certs: certs.map(x509) };
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
  cert: X509Certificate;
  certs: X509Certificate[];
}

/**
 * Checks a TimeStampToken: its imprint is over `signature`, the TSA's signature verifies, and
 * the TSA certificate is for timestamping. Plain Errors, for the caller to word.
 */
export async function inspectTimestampToken(
  token: pkijs.ContentInfo,
  signature: Uint8Array,
): Promise<CheckedTimestamp> {
  const signed = new pkijs.SignedData({ schema: token.content });
  const eContent = signed.encapContentInfo.eContent;
  if (!eContent) throw new Error("the timestamp token has no TSTInfo");
  const tstDer = new Uint8Array(eContent.getValue());
  const tst = pkijs.TSTInfo.fromBER(tstDer.slice().buffer);
  const name = hashByOid(tst.messageImprint.hashAlgorithm.algorithmId);
  if (!name)
    throw new Error(
      `the timestamp's imprint uses an unsupported hash (${tst.messageImprint.hashAlgorithm.algorithmId})`,
    );
  const expected = createHash(name).update(signature).digest();
  if (!Buffer.from(tst.messageImprint.hashedMessage.valueBlock.valueHexView).equals(expected)) {
    throw new Error("the timestamp is for other data (its message imprint does not match the signature)");
  }
  const si = signed.signerInfos[0];
  const hash = si ? hashByOid(si.digestAlgorithm.algorithmId) : undefined;
  if (!hash) throw new Error("the timestamp's signer uses an unsupported digest");
  let checked: { cert: X509Certificate; certs: X509Certificate[] };
  try {
    checked = await checkSignerInfo(
      signed,
      hash,
      new Uint8Array(createHash(hash).update(tstDer).digest()),
      tstDer,
    );
  } catch (e) {
    throw new Error(`the TSA's signature on the timestamp does not verify (${(e as Error).message})`);
  }
  // RFC 3161 §2.3: a TSA certificate has the timeStamping extended key usage.
  if (!(checked.cert.keyUsage ?? []).includes(OID_TIME_STAMPING)) {
    throw new Error(`the TSA certificate (${subjectOf(checked.cert)}) is not for timestamping`);
  }
  return { tst, ...checked };
}

/** {@link inspectTimestampToken}, returning the TSTInfo. */
export async function checkTimestampToken(
  token: pkijs.ContentInfo,
  signature: Uint8Array,
): Promise<pkijs.TSTInfo> {
  return (await inspectTimestampToken(token, signature)).tst;
}

/** The TSA's name from a TSTInfo (a directoryName, a URI or a DNS name), when present. */
function tsaName(tst: pkijs.TSTInfo): string | undefined {
  const v: unknown = tst.tsa?.value;
  if (v === undefined) return undefined;
  if (v instanceof pkijs.RelativeDistinguishedNames)
    return v.typesAndValues.map((t) => `${t.type}=${String(t.value.valueBlock.value)}`).join(", ");
  return String(v);
}

/**
 * Verifies a CMS SignedData. `contentFile`: the signed file of a detached signature; for an
 * attached one, when given, it must be the embedded content.
 */
export async function verifyCms(
  signed: pkijs.SignedData,
  contentFile: string | undefined,
  caFiles: string[],
): Promise<VerifyReport> {
  const si = signed.signerInfos[0];
  if (!si) throw fail("the CMS holds no signer");
  const eContent = signed.encapContentInfo.eContent;
  const attached = eContent !== undefined;
  if (!attached && contentFile === undefined) {
    throw new CodesignError("USAGE", "this CMS signature is detached: name the signed file", {
      hint: "codesign verify --in FILE --signature FILE.p7s",
    });
  }
  const hash = hashByOid(si.digestAlgorithm.algorithmId);
  if (!hash) throw fail(`unsupported digest algorithm ${si.digestAlgorithm.algorithmId}`);
  const content = attached ? new Uint8Array(eContent.getValue()) : undefined;
  const digest = content
    ? new Uint8Array(createHash(hash).update(content).digest())
    : await hashFile(contentFile as string, hash);
  if (content && contentFile !== undefined) {
    const file = await hashFile(contentFile, hash);
    if (!Buffer.from(file).equals(Buffer.from(digest))) {
      throw fail(
        `${contentFile} is not the content embedded in this attached signature`,
        "verify the attached signature alone: codesign verify --in FILE.p7s",
      );
    }
  }

  const { cert, certs } = await checkSignerInfo(signed, hash, digest, content ?? (contentFile as string));
  const sig = new Uint8Array(si.signature.valueBlock.valueHexView);
  const anchors = await trustAnchors(caFiles);
  const warnings: string[] = [];

  const timestamps: TimestampReport[] = [];
  let trustedTime: Date | undefined;
  for (const attr of si.unsignedAttrs?.attributes ?? []) {
    if (attr.type !== OID.timeStampToken) continue;
    let ts: CheckedTimestamp;
    try {
      ts = await inspectTimestampToken(new pkijs.ContentInfo({ schema: attr.values[0] }), sig);
    } catch (e) {
      throw fail(`the embedded timestamp is invalid: ${(e as Error).message}`);
    }
    // Public TSAs chain to the system store; a private one to a --ca file: both are asked.
    const tsaAnchors = caFiles.length === 0 ? anchors : [...anchors, ...systemRoots()];
    let trusted = true;
    try {
      checkChain(ts.cert, ts.certs, tsaAnchors, ts.tst.genTime, "TSA");
    } catch (e) {
      trusted = false;
      warnings.push(
        `the timestamp's TSA is not trusted (${(e as Error).message}); its time is reported but not relied on`,
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
  checkChain(cert, certs, anchors, trustedTime ?? new Date(), "signer");
  if (!(cert.keyUsage ?? []).includes(OID_CODE_SIGNING)) {
    warnings.push(
      "the signer certificate has no codeSigning extended key usage; code-signing verifiers may refuse it",
    );
  }
  return { valid: true, kind: "cms", signer: subjectOf(cert), attached, timestamps, warnings };
}
