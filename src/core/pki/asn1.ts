/**
 * Small ASN.1 helpers around what PKCS#11 tokens hand out (raw ECDSA r‖s, CKA_EC_PARAMS,
 * CKA_EC_POINT, RSA modulus/exponent) and what OpenSSL, X.509 and CMS expect. Every
 * structure is built and parsed with asn1js/pkijs; nothing here writes DER by hand.
 */
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { CodesignError } from "../errors.js";
import type { HashName, KeyType, SignatureScheme } from "../signer.js";
import { HASH_NAMES, schemeFitsKey } from "../signer.js";

// ---------------------------------------------------------------------------------------------
// Object identifiers

const HASH_OIDS: Record<HashName, string> = {
  sha256: "2.16.840.1.101.3.4.2.1",
  sha384: "2.16.840.1.101.3.4.2.2",
  sha512: "2.16.840.1.101.3.4.2.3",
};
/** The hash an AlgorithmIdentifier OID names, when it is one codesign knows. */
export const hashByOid = (oid: string): HashName | undefined =>
  (Object.keys(HASH_OIDS) as HashName[]).find((h) => HASH_OIDS[h] === oid);
export const HASH_BYTES: Record<HashName, number> = { sha256: 32, sha384: 48, sha512: 64 };

const OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1";
export const OID_RSASSA_PSS = "1.2.840.113549.1.1.10";
const OID_MGF1 = "1.2.840.113549.1.1.8";
const OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const OID_ED25519 = "1.3.101.112";
const OID_ED448 = "1.3.101.113";

const RSA_PKCS1_OIDS: Record<HashName, string> = {
  sha256: "1.2.840.113549.1.1.11",
  sha384: "1.2.840.113549.1.1.12",
  sha512: "1.2.840.113549.1.1.13",
};
const ECDSA_OIDS: Record<HashName, string> = {
  sha256: "1.2.840.10045.4.3.2",
  sha384: "1.2.840.10045.4.3.3",
  sha512: "1.2.840.10045.4.3.4",
};

export interface CurveInfo {
  /** `P-256`, `P-384`, `P-521`, `secp256k1`, `Ed25519`, `Ed448`. */
  name: string;
  /** The curve's standard OID (for Edwards curves the RFC 8410 algorithm OID). */
  oid: string;
  /** Field size in bytes: the length of r and of s in a raw ECDSA signature, of an EdDSA key. */
  size: number;
  edwards: boolean;
}

const CURVES: readonly CurveInfo[] = [
  { name: "P-256", oid: "1.2.840.10045.3.1.7", size: 32, edwards: false },
  { name: "P-384", oid: "1.3.132.0.34", size: 48, edwards: false },
  { name: "P-521", oid: "1.3.132.0.35", size: 66, edwards: false },
  { name: "secp256k1", oid: "1.3.132.0.10", size: 32, edwards: false },
  { name: "Ed25519", oid: OID_ED25519, size: 32, edwards: true },
  { name: "Ed448", oid: OID_ED448, size: 57, edwards: true },
];

/** Other spellings of the Edwards curves seen in CKA_EC_PARAMS (PKCS#11 3.0 and OpenSC/GnuPG). */
const CURVE_ALIASES: Record<string, string> = {
  edwards25519: "Ed25519",
  edwards448: "Ed448",
  "1.3.6.1.4.1.11591.15.1": "Ed25519",
};

function invalid(message: string, hint?: string): CodesignError {
  return new CodesignError("INVALID_INPUT", message, hint === undefined ? {} : { hint });
}

function checkHash(hash: HashName): void {
  if (!HASH_NAMES.includes(hash)) {
    throw invalid(`unsupported hash "${String(hash)}"`, `use one of ${HASH_NAMES.join(", ")}`);
  }
}

export function hashOid(hash: HashName): string {
  checkHash(hash);
  return HASH_OIDS[hash];
}

// ---------------------------------------------------------------------------------------------
// Parsing and integers

/** Parses exactly one BER/DER element, with no trailing bytes. */
export function parseDer(der: Uint8Array, what: string): asn1js.AsnType {
  const parsed = asn1js.fromBER(der);
  if (parsed.offset === -1 || parsed.result.error) {
    throw invalid(`${what} is not valid DER: ${parsed.result.error || "parse error"}`);
  }
  if (parsed.offset !== der.byteLength) {
    throw invalid(`${what} has ${der.byteLength - parsed.offset} trailing bytes`);
  }
  return parsed.result;
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** An unsigned big-endian number as a minimal, non-negative DER INTEGER. */
export function unsignedInteger(bytes: Uint8Array): asn1js.Integer {
  return asn1js.Integer.fromBigInt(bytes.length === 0 ? 0n : BigInt(`0x${toHex(bytes)}`));
}

/** The magnitude of a non-negative INTEGER, without leading zero bytes (empty for zero). */
function integerMagnitude(int: asn1js.Integer, what: string): Uint8Array {
  const content = int.valueBlock.valueHexView;
  if (content.length === 0 || ((content[0] ?? 0) & 0x80) !== 0) {
    throw invalid(`${what} is not a positive INTEGER`);
  }
  let start = 0;
  while (start < content.length && content[start] === 0) start++;
  return content.slice(start);
}

// ---------------------------------------------------------------------------------------------
// ECDSA signatures

/** Raw PKCS#11 ECDSA output `r‖s` → DER `SEQUENCE { INTEGER r, INTEGER s }`. */
export function ecdsaRawToDer(rs: Uint8Array): Uint8Array {
  if (rs.length === 0 || rs.length % 2 !== 0) {
    throw invalid(
      `a raw ECDSA signature must be r‖s of two equal halves, got ${rs.length} bytes`,
      "the token returned an unexpected ECDSA signature",
    );
  }
  const half = rs.length / 2;
  const seq = new asn1js.Sequence({
    value: [unsignedInteger(rs.subarray(0, half)), unsignedInteger(rs.subarray(half))],
  });
  return new Uint8Array(seq.toBER());
}

/** DER `SEQUENCE { INTEGER r, INTEGER s }` → `r‖s`, each left-padded to `size` bytes (IEEE P1363). */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Uint8Array {
  if (!Number.isInteger(size) || size <= 0) throw invalid(`invalid ECDSA field size ${size}`);
  if (der.length === 0) throw invalid("the ECDSA signature is empty");
  const seq = parseDer(der, "the ECDSA signature");
  const items = seq instanceof asn1js.Sequence ? seq.valueBlock.value : [];
  const [r, s] = items;
  if (items.length !== 2 || !(r instanceof asn1js.Integer) || !(s instanceof asn1js.Integer)) {
    throw invalid("the ECDSA signature is not SEQUENCE { INTEGER r, INTEGER s }");
  }
  const out = new Uint8Array(2 * size);
  for (const [i, int] of [r, s].entries()) {
    const mag = integerMagnitude(int, i === 0 ? "ECDSA r" : "ECDSA s");
    if (mag.length > size) {
      throw invalid(`ECDSA ${i === 0 ? "r" : "s"} is longer than the ${size}-byte field`);
    }
    out.set(mag, (i + 1) * size - mag.length);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Algorithm identifiers

export function hashAlgorithm(hash: HashName): pkijs.AlgorithmIdentifier {
  return new pkijs.AlgorithmIdentifier({ algorithmId: hashOid(hash), algorithmParams: new asn1js.Null() });
}

/** DER DigestInfo for CKM_RSA_PKCS: `SEQUENCE { AlgorithmIdentifier(hash, NULL), OCTET STRING digest }`. */
export function digestInfo(hash: HashName, digest: Uint8Array): Uint8Array {
  checkHash(hash);
  if (digest.length !== HASH_BYTES[hash]) {
    throw invalid(`a ${hash} digest must be ${HASH_BYTES[hash]} bytes, got ${digest.length}`);
  }
  const info = new pkijs.DigestInfo({
    digestAlgorithm: hashAlgorithm(hash),
    digest: new asn1js.OctetString({ valueHex: digest }),
  });
  return new Uint8Array(info.toSchema().toBER());
}

/**
 * The AlgorithmIdentifier of a signature, encoded as OpenSSL writes and expects it.
 * `curve` tells Ed25519 from Ed448 for `eddsa` (default Ed25519); `hash` is ignored for EdDSA.
 */
export function signatureAlgorithm(
  keyType: KeyType,
  scheme: SignatureScheme,
  hash: HashName,
  curve?: string,
): pkijs.AlgorithmIdentifier {
  if (!schemeFitsKey(scheme, keyType)) {
    throw invalid(
      `the ${scheme} signature scheme does not fit a ${keyType} key`,
      keyType === "rsa" ? "use rsa-pkcs1 or rsa-pss" : `use ${keyType === "ec" ? "ecdsa" : "eddsa"}`,
    );
  }
  if (scheme === "eddsa") {
    if (curve !== undefined && curve !== "Ed25519" && curve !== "Ed448") {
      throw invalid(`unsupported EdDSA curve ${curve}`, "use an Ed25519 or Ed448 key");
    }
    return new pkijs.AlgorithmIdentifier({ algorithmId: curve === "Ed448" ? OID_ED448 : OID_ED25519 });
  }
  checkHash(hash);
  if (scheme === "rsa-pkcs1") {
    return new pkijs.AlgorithmIdentifier({
      algorithmId: RSA_PKCS1_OIDS[hash],
      algorithmParams: new asn1js.Null(),
    });
  }
  if (scheme === "rsa-pss") {
    const params = new pkijs.RSASSAPSSParams({
      hashAlgorithm: hashAlgorithm(hash),
      maskGenAlgorithm: new pkijs.AlgorithmIdentifier({
        algorithmId: OID_MGF1,
        algorithmParams: hashAlgorithm(hash).toSchema(),
      }),
      saltLength: HASH_BYTES[hash],
    });
    return new pkijs.AlgorithmIdentifier({ algorithmId: OID_RSASSA_PSS, algorithmParams: params.toSchema() });
  }
  return new pkijs.AlgorithmIdentifier({ algorithmId: ECDSA_OIDS[hash] });
}

// ---------------------------------------------------------------------------------------------
// Curves

function curveByName(name: string): CurveInfo | undefined {
  return CURVES.find((c) => c.name === name);
}

/** Names the curve of a PKCS#11 CKA_EC_PARAMS value (a DER OID, or a PrintableString for Edwards). */
export function curveFromEcParams(ecParamsDer: Uint8Array): CurveInfo {
  if (ecParamsDer.length === 0) throw invalid("CKA_EC_PARAMS is empty");
  const params = parseDer(ecParamsDer, "CKA_EC_PARAMS");
  let id: string;
  if (params instanceof asn1js.ObjectIdentifier) id = params.getValue();
  else if (params instanceof asn1js.PrintableString) id = params.getValue();
  else if (params instanceof asn1js.Sequence) {
    throw invalid("explicit EC domain parameters are not supported", "use a key on a named curve");
  } else {
    throw invalid("CKA_EC_PARAMS is neither a curve OID nor a curve name");
  }
  const alias = CURVE_ALIASES[id];
  const curve = alias ? curveByName(alias) : CURVES.find((c) => c.oid === id);
  if (!curve) {
    throw invalid(
      `unsupported elliptic curve ${id}`,
      "supported curves: P-256, P-384, P-521, secp256k1, Ed25519, Ed448",
    );
  }
  return { ...curve };
}

/** DER OID of a NIST curve, for CKA_EC_PARAMS in C_GenerateKeyPair templates. */
export function ecParamsForCurve(name: "P-256" | "P-384" | "P-521"): Uint8Array {
  const curve = (["P-256", "P-384", "P-521"] as string[]).includes(name) ? curveByName(name) : undefined;
  if (!curve) {
    throw invalid(`unsupported curve ${String(name)}`, "use P-256, P-384 or P-521");
  }
  return new Uint8Array(new asn1js.ObjectIdentifier({ value: curve.oid }).toBER());
}

// ---------------------------------------------------------------------------------------------
// SubjectPublicKeyInfo

function spki(algorithm: pkijs.AlgorithmIdentifier, key: Uint8Array): Uint8Array {
  const info = new pkijs.PublicKeyInfo({
    algorithm,
    subjectPublicKey: new asn1js.BitString({ valueHex: key }),
  });
  return new Uint8Array(info.toSchema().toBER());
}

/** DER SubjectPublicKeyInfo of an RSA key from CKA_MODULUS and CKA_PUBLIC_EXPONENT (unsigned big-endian). */
export function spkiFromRsa(modulus: Uint8Array, publicExponent: Uint8Array): Uint8Array {
  if (!modulus.some((b) => b !== 0)) throw invalid("the RSA modulus is empty");
  if (!publicExponent.some((b) => b !== 0)) throw invalid("the RSA public exponent is empty");
  const key = new pkijs.RSAPublicKey({
    modulus: unsignedInteger(modulus),
    publicExponent: unsignedInteger(publicExponent),
  });
  return spki(
    new pkijs.AlgorithmIdentifier({ algorithmId: OID_RSA_ENCRYPTION, algorithmParams: new asn1js.Null() }),
    new Uint8Array(key.toSchema().toBER()),
  );
}

/**
 * CKA_EC_POINT is meant to be a DER OCTET STRING around the point, but some tokens return the
 * bare point. The two cannot be confused for real curves: we accept the wrapper only when its
 * content has a valid point length, and otherwise the bare value only when it has one.
 */
function unwrapPoint(point: Uint8Array, valid: (p: Uint8Array) => boolean): Uint8Array | undefined {
  const parsed = asn1js.fromBER(point);
  if (
    parsed.offset === point.byteLength &&
    !parsed.result.error &&
    parsed.result instanceof asn1js.OctetString &&
    !parsed.result.idBlock.isConstructed
  ) {
    const inner = new Uint8Array(parsed.result.valueBlock.valueHexView);
    if (valid(inner)) return inner;
  }
  return valid(point) ? new Uint8Array(point) : undefined;
}

/** DER SubjectPublicKeyInfo of an EC key from CKA_EC_PARAMS and CKA_EC_POINT (wrapped or raw). */
export function spkiFromEc(ecParamsDer: Uint8Array, ecPointDer: Uint8Array): Uint8Array {
  const curve = curveFromEcParams(ecParamsDer);
  if (curve.edwards) return spkiFromEdwards(ecParamsDer, ecPointDer);
  const n = curve.size;
  const point = unwrapPoint(
    ecPointDer,
    (p) =>
      (p.length === 2 * n + 1 && p[0] === 0x04) || (p.length === n + 1 && (p[0] === 0x02 || p[0] === 0x03)),
  );
  if (!point) {
    throw invalid(`CKA_EC_POINT is not a ${curve.name} point (${ecPointDer.length} bytes)`);
  }
  return spki(
    new pkijs.AlgorithmIdentifier({
      algorithmId: OID_EC_PUBLIC_KEY,
      algorithmParams: new asn1js.ObjectIdentifier({ value: curve.oid }),
    }),
    point,
  );
}

/** DER SubjectPublicKeyInfo (RFC 8410) of an Ed25519/Ed448 key from CKA_EC_PARAMS and CKA_EC_POINT. */
export function spkiFromEdwards(ecParamsDer: Uint8Array, ecPointDer: Uint8Array): Uint8Array {
  const curve = curveFromEcParams(ecParamsDer);
  if (!curve.edwards) throw invalid(`${curve.name} is not an Edwards curve`);
  const point = unwrapPoint(ecPointDer, (p) => p.length === curve.size);
  if (!point) {
    throw invalid(`CKA_EC_POINT is not an ${curve.name} public key (${ecPointDer.length} bytes)`);
  }
  return spki(new pkijs.AlgorithmIdentifier({ algorithmId: curve.oid }), point);
}

export interface SpkiInfo {
  keyType: KeyType;
  /** EC and EdDSA keys. */
  curve?: CurveInfo;
  /** The subjectPublicKey BIT STRING contents (for key identifiers). */
  publicKey: Uint8Array;
}

/** What kind of key a DER SubjectPublicKeyInfo holds. */
export function spkiInfo(spkiDer: Uint8Array): SpkiInfo {
  let info: pkijs.PublicKeyInfo;
  try {
    info = new pkijs.PublicKeyInfo({ schema: parseDer(spkiDer, "the public key") });
  } catch (cause) {
    if (cause instanceof CodesignError) throw cause;
    throw new CodesignError("INVALID_INPUT", "the public key is not a SubjectPublicKeyInfo", { cause });
  }
  const publicKey = new Uint8Array(info.subjectPublicKey.valueBlock.valueHexView);
  const oid = info.algorithm.algorithmId;
  if (oid === OID_RSA_ENCRYPTION || oid === OID_RSASSA_PSS) return { keyType: "rsa", publicKey };
  if (oid === OID_ED25519 || oid === OID_ED448) {
    const curve = CURVES.find((c) => c.oid === oid) as CurveInfo;
    return { keyType: "eddsa", curve: { ...curve }, publicKey };
  }
  if (oid === OID_EC_PUBLIC_KEY) {
    const params: unknown = info.algorithm.algorithmParams;
    if (!(params instanceof asn1js.ObjectIdentifier)) {
      throw invalid("the EC public key does not name its curve");
    }
    return {
      keyType: "ec",
      curve: curveFromEcParams(new Uint8Array(params.toBER())),
      publicKey,
    };
  }
  throw invalid(`unsupported public key algorithm ${oid}`);
}

// ---------------------------------------------------------------------------------------------
// PEM

/** PEM with 64-character base64 lines and a trailing newline. */
export function pemEncode(label: string, der: Uint8Array): string {
  if (!/^[A-Z0-9]+(?:[ -][A-Z0-9]+)*$/.test(label)) throw invalid(`invalid PEM label "${label}"`);
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}${lines.length ? "\n" : ""}-----END ${label}-----\n`;
}

/** Every PEM block in `text`, in order; text around the blocks is ignored. */
export function pemDecode(text: string | Uint8Array): { label: string; der: Uint8Array }[] {
  const s = typeof text === "string" ? text : Buffer.from(text).toString("latin1");
  const out: { label: string; der: Uint8Array }[] = [];
  const re = /-----BEGIN ([^-\r\n]*)-----([\s\S]*?)-----END ([^-\r\n]*)-----/g;
  for (const m of s.matchAll(re)) {
    const [, label = "", body = "", end = ""] = m;
    if (label !== end) throw invalid(`PEM block "BEGIN ${label}" ends with "END ${end}"`);
    const b64 = body.replace(/\s+/g, "");
    if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) {
      throw invalid(
        `the PEM block "${label}" is not valid base64`,
        "encrypted or annotated PEM is not supported",
      );
    }
    out.push({ label, der: new Uint8Array(Buffer.from(b64, "base64")) });
  }
  return out;
}

/**
 * DER as is, or the first PEM block (whose label is one of `labels`, when given).
 * DER is recognised by its leading SEQUENCE tag.
 */
export function derOrPem(bytes: Uint8Array, labels?: readonly string[]): Uint8Array {
  if (bytes[0] === 0x30) return new Uint8Array(bytes);
  const blocks = pemDecode(bytes).filter((b) => !labels || labels.includes(b.label));
  const first = blocks[0];
  if (!first) {
    throw invalid(
      labels ? `no ${labels.join(" or ")} found in PEM or DER input` : "the input is neither DER nor PEM",
    );
  }
  return first.der;
}
