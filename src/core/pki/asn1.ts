/**
 * Small ASN.1 helpers around what PKCS#11 tokens hand out (raw ECDSA r‖s, CKA_EC_PARAMS,
 * CKA_EC_POINT, RSA modulus/exponent) and what OpenSSL, X.509 and CMS expect. Every
 * structure is built and parsed with asn1js; nothing here writes DER by hand. This module
 * stays clear of pkijs on purpose: signing raw signatures loads it, and pkijs costs ~100 ms of
 * start-up (algorithm identifiers and SPKI parsing for CMS and X.509 are in algorithms.ts).
 */
import * as asn1js from "asn1js";
import { CodesignError } from "../errors.js";
import type { HashName } from "../signer.js";
import { HASH_NAMES } from "../signer.js";

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

export const OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1";
export const OID_RSASSA_PSS = "1.2.840.113549.1.1.10";
export const OID_MGF1 = "1.2.840.113549.1.1.8";
export const OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1";
export const OID_ED25519 = "1.3.101.112";
export const OID_ED448 = "1.3.101.113";

export const RSA_PKCS1_OIDS: Record<HashName, string> = {
  sha256: "1.2.840.113549.1.1.11",
  sha384: "1.2.840.113549.1.1.12",
  sha512: "1.2.840.113549.1.1.13",
};
export const ECDSA_OIDS: Record<HashName, string> = {
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

export const CURVES: readonly CurveInfo[] = [
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

export function invalid(message: string, hint?: string): CodesignError {
  return new CodesignError("INVALID_INPUT", message, hint === undefined ? {} : { hint });
}

export function checkHash(hash: HashName): void {
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
// DigestInfo

/** `AlgorithmIdentifier { hash OID, NULL }` as asn1js builds it. */
function hashAlgorithmSchema(hash: HashName): asn1js.Sequence {
  return new asn1js.Sequence({
    value: [new asn1js.ObjectIdentifier({ value: hashOid(hash) }), new asn1js.Null()],
  });
}

/** DER DigestInfo for CKM_RSA_PKCS: `SEQUENCE { AlgorithmIdentifier(hash, NULL), OCTET STRING digest }`. */
export function digestInfo(hash: HashName, digest: Uint8Array): Uint8Array {
  checkHash(hash);
  if (digest.length !== HASH_BYTES[hash]) {
    throw invalid(`a ${hash} digest must be ${HASH_BYTES[hash]} bytes, got ${digest.length}`);
  }
  const info = new asn1js.Sequence({
    value: [hashAlgorithmSchema(hash), new asn1js.OctetString({ valueHex: digest })],
  });
  return new Uint8Array(info.toBER());
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

/** `SEQUENCE { AlgorithmIdentifier { oid, params? }, BIT STRING key }`. */
function spki(oid: string, params: asn1js.AsnType | undefined, key: Uint8Array): Uint8Array {
  const algorithm = new asn1js.Sequence({
    value: [new asn1js.ObjectIdentifier({ value: oid }), ...(params ? [params] : [])],
  });
  return new Uint8Array(
    new asn1js.Sequence({ value: [algorithm, new asn1js.BitString({ valueHex: key })] }).toBER(),
  );
}

/** DER SubjectPublicKeyInfo of an RSA key from CKA_MODULUS and CKA_PUBLIC_EXPONENT (unsigned big-endian). */
export function spkiFromRsa(modulus: Uint8Array, publicExponent: Uint8Array): Uint8Array {
  if (!modulus.some((b) => b !== 0)) throw invalid("the RSA modulus is empty");
  if (!publicExponent.some((b) => b !== 0)) throw invalid("the RSA public exponent is empty");
  // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017 A.1.1)
  const key = new asn1js.Sequence({ value: [unsignedInteger(modulus), unsignedInteger(publicExponent)] });
  return spki(OID_RSA_ENCRYPTION, new asn1js.Null(), new Uint8Array(key.toBER()));
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
  return spki(OID_EC_PUBLIC_KEY, new asn1js.ObjectIdentifier({ value: curve.oid }), point);
}

/** DER SubjectPublicKeyInfo (RFC 8410) of an Ed25519/Ed448 key from CKA_EC_PARAMS and CKA_EC_POINT. */
export function spkiFromEdwards(ecParamsDer: Uint8Array, ecPointDer: Uint8Array): Uint8Array {
  const curve = curveFromEcParams(ecParamsDer);
  if (!curve.edwards) throw invalid(`${curve.name} is not an Edwards curve`);
  const point = unwrapPoint(ecPointDer, (p) => p.length === curve.size);
  if (!point) {
    throw invalid(`CKA_EC_POINT is not an ${curve.name} public key (${ecPointDer.length} bytes)`);
  }
  return spki(curve.oid, undefined, point);
}

/**
 * The SubjectPublicKeyInfo of an X.509 certificate (DER or PEM), exactly as the certificate
 * carries it: finding a key on a token and matching a certificate to it use the same bytes, and
 * neither loads pkijs.
 */
export function certificatePublicKey(cert: Uint8Array): Uint8Array {
  const notCertificate = (): CodesignError =>
    invalid("not an X.509 certificate", "give a DER or PEM certificate");
  const root = parseDer(derOrPem(cert, ["CERTIFICATE"]), "the certificate");
  const tbs = root instanceof asn1js.Sequence ? root.valueBlock.value[0] : undefined;
  const fields = tbs instanceof asn1js.Sequence ? tbs.valueBlock.value : [];
  // TBSCertificate ::= SEQUENCE { version [0] EXPLICIT OPTIONAL, serialNumber, signature, issuer,
  //   validity, subject, subjectPublicKeyInfo, … } (RFC 5280 4.1)
  const version = fields[0]?.idBlock;
  const spki = fields[version?.tagClass === 3 && version.tagNumber === 0 ? 6 : 5];
  if (!(spki instanceof asn1js.Sequence)) throw notCertificate();
  return new Uint8Array(spki.valueBeforeDecodeView);
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
