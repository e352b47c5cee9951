/**
 * PKCS#10 requests and self-signed X.509 certificates, built with pkijs and signed through a
 * Signer (a token key), never through a WebCrypto CryptoKey.
 */
import { constants, createHash, createPublicKey, type KeyObject, randomBytes, verify } from "node:crypto";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { signatureAlgorithm, type SpkiInfo, spkiInfo } from "./algorithms.js";
import { derOrPem, HASH_BYTES, parseDer, unsignedInteger } from "./asn1.js";
import { CodesignError } from "../errors.js";
import {
  defaultScheme,
  HASH_NAMES,
  type HashName,
  schemeFitsKey,
  SIGNATURE_SCHEMES,
  type SignatureScheme,
  type Signer,
} from "../signer.js";

// ---------------------------------------------------------------------------------------------
// Distinguished names

export interface NameAttribute {
  /** Short name as OpenSSL prints it (`CN`, `O`, `emailAddress`...), or the dotted OID. */
  type: string;
  oid: string;
  value: string;
}

/** RDNs in encoding order (most significant first, e.g. `C` before `CN`); each RDN is one or more attributes. */
export type DistinguishedName = NameAttribute[][];

type StringKind = "utf8" | "printable" | "ia5" | "country";

interface AttributeType {
  name: string;
  oid: string;
  kind: StringKind;
  aliases?: string[];
}

const ATTRIBUTE_TYPES: readonly AttributeType[] = [
  { name: "CN", oid: "2.5.4.3", kind: "utf8", aliases: ["commonName"] },
  { name: "O", oid: "2.5.4.10", kind: "utf8", aliases: ["organizationName"] },
  { name: "OU", oid: "2.5.4.11", kind: "utf8", aliases: ["organizationalUnitName"] },
  { name: "C", oid: "2.5.4.6", kind: "country", aliases: ["countryName"] },
  { name: "L", oid: "2.5.4.7", kind: "utf8", aliases: ["localityName"] },
  { name: "ST", oid: "2.5.4.8", kind: "utf8", aliases: ["stateOrProvinceName", "S"] },
  { name: "street", oid: "2.5.4.9", kind: "utf8", aliases: ["streetAddress"] },
  { name: "postalCode", oid: "2.5.4.17", kind: "utf8" },
  { name: "emailAddress", oid: "1.2.840.113549.1.9.1", kind: "ia5", aliases: ["E", "email"] },
  { name: "serialNumber", oid: "2.5.4.5", kind: "printable" },
  { name: "DC", oid: "0.9.2342.19200300.100.1.25", kind: "ia5", aliases: ["domainComponent"] },
  { name: "UID", oid: "0.9.2342.19200300.100.1.1", kind: "utf8", aliases: ["userId"] },
  { name: "title", oid: "2.5.4.12", kind: "utf8" },
  { name: "GN", oid: "2.5.4.42", kind: "utf8", aliases: ["givenName"] },
  { name: "SN", oid: "2.5.4.4", kind: "utf8", aliases: ["surname"] },
  { name: "organizationIdentifier", oid: "2.5.4.97", kind: "utf8" },
  { name: "businessCategory", oid: "2.5.4.15", kind: "utf8" },
  {
    name: "jurisdictionC",
    oid: "1.3.6.1.4.1.311.60.2.1.3",
    kind: "country",
    aliases: ["jurisdictionCountryName"],
  },
];

const TYPE_BY_NAME = new Map<string, AttributeType>();
for (const t of ATTRIBUTE_TYPES) {
  for (const n of [t.name, ...(t.aliases ?? [])]) TYPE_BY_NAME.set(n.toLowerCase(), t);
}
const TYPE_BY_OID = new Map(ATTRIBUTE_TYPES.map((t) => [t.oid, t]));

const SUBJECT_HINT =
  'e.g. --subject "CN=Example Code Signing,O=Example Ltd,C=DE" or "/C=DE/O=Example Ltd/CN=..."';

function invalid(message: string, hint: string = SUBJECT_HINT): CodesignError {
  return new CodesignError("INVALID_INPUT", message, { hint });
}

function malformed(message: string): CodesignError {
  return new CodesignError("INVALID_INPUT", message);
}

function attributeType(text: string): AttributeType {
  const known = TYPE_BY_NAME.get(text.toLowerCase());
  if (known) return known;
  if (/^\d+(?:\.\d+)+$/.test(text)) return TYPE_BY_OID.get(text) ?? { name: text, oid: text, kind: "utf8" };
  throw invalid(
    `unknown attribute type "${text}" in the subject`,
    `known types: ${ATTRIBUTE_TYPES.map((t) => t.name).join(", ")}, or a dotted OID`,
  );
}

function checkValue(type: AttributeType, value: string): string {
  if (value === "") throw invalid(`empty value for ${type.name} in the subject`);
  switch (type.kind) {
    case "country":
      if (!/^[A-Za-z]{2}$/.test(value)) {
        throw invalid(`${type.name}=${value}: a country must be a two-letter ISO 3166 code`, "e.g. C=DE");
      }
      return value.toUpperCase();
    case "printable":
      if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value)) {
        throw invalid(`${type.name}=${value}: only letters, digits, spaces and '()+,-./:=? are allowed`);
      }
      return value;
    case "ia5":
      if (!/^[\x20-\x7e]*$/.test(value)) throw invalid(`${type.name}=${value}: only ASCII is allowed`);
      return value;
    default:
      return value;
  }
}

const utf8 = new TextEncoder();

/**
 * Parses a subject in RFC 4514 syntax (`CN=Name,O=Org,C=DE`, last RDN first, `\,` and `\2C`
 * escapes, `+` for multi-valued RDNs) or OpenSSL's (`/C=DE/O=Org/CN=Name`, first RDN first).
 * Spaces around separators are ignored. Returns the RDNs in encoding order.
 */
export function parseSubject(text: string): DistinguishedName {
  // only leading space is trimmed here: a trailing "\ " is an escaped space
  const trimmed = text.trimStart();
  const slash = trimmed.startsWith("/");
  const sep = slash ? "/" : ",";
  const chars = [...(slash ? trimmed.slice(1) : trimmed)];
  if (chars.every((c) => /\s/.test(c))) throw invalid("the subject is empty");

  const rdns: DistinguishedName = [];
  let rdn: NameAttribute[] = [];
  let i = 0;
  for (;;) {
    // attribute type, up to "="
    let typeText = "";
    while (i < chars.length && chars[i] !== "=" && chars[i] !== sep && chars[i] !== "+")
      typeText += chars[i++];
    typeText = typeText.trim();
    if (chars[i] !== "=") {
      throw invalid(
        typeText === ""
          ? `an empty attribute in the subject "${text}"`
          : `"${typeText}" has no "=" in the subject`,
      );
    }
    i++;
    if (typeText === "") throw invalid(`an attribute type is missing before "=" in the subject "${text}"`);
    const type = attributeType(typeText);

    // value, up to an unescaped separator; escaped characters are never trimmed
    const bytes: number[] = [];
    let keep = 0;
    while (i < chars.length && chars[i] !== sep && chars[i] !== "+") {
      let c = chars[i++] as string;
      let escaped = false;
      if (c === "\\") {
        const next = chars[i];
        if (next === undefined) throw invalid(`the subject ends with a lone "\\"`);
        const pair = next + (chars[i + 1] ?? "");
        if (!slash && /^[0-9A-Fa-f]{2}$/.test(pair)) {
          bytes.push(parseInt(pair, 16));
          keep = bytes.length;
          i += 2;
          continue;
        }
        c = next;
        i++;
        escaped = true;
      }
      if (!escaped && bytes.length === 0) {
        if (c === " ") continue;
        if (c === "#" && !slash) {
          throw invalid(
            `${type.name}=#...: hex-encoded values are not supported`,
            'escape a leading "#" as "\\#"',
          );
        }
      }
      bytes.push(...utf8.encode(c));
      if (escaped || c !== " ") keep = bytes.length;
    }
    let value: string;
    try {
      value = new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes.slice(0, keep)));
    } catch {
      throw invalid(`the value of ${type.name} is not valid UTF-8`);
    }
    rdn.push({ type: type.name, oid: type.oid, value: checkValue(type, value) });

    const next = chars[i++];
    if (next === "+") continue;
    rdns.push(rdn);
    rdn = [];
    if (next === undefined) break;
    if (i >= chars.length) throw invalid(`the subject "${text}" ends with "${sep}"`);
  }
  return slash ? rdns : rdns.reverse();
}

function attributeValue(attr: NameAttribute): asn1js.BaseBlock {
  const kind = TYPE_BY_OID.get(attr.oid)?.kind ?? "utf8";
  if (kind === "country" || kind === "printable") return new asn1js.PrintableString({ value: attr.value });
  if (kind === "ia5") return new asn1js.IA5String({ value: attr.value });
  return new asn1js.Utf8String({ value: attr.value });
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return (a[i] ?? 0) - (b[i] ?? 0);
  }
  return a.length - b.length;
}

/**
 * pkijs flattens names into one multi-valued RDN when it builds them, so the Name is built
 * with asn1js (one SET per RDN, sorted for DER) and handed to pkijs as parsed DER.
 */
function nameFor(dn: DistinguishedName): pkijs.RelativeDistinguishedNames {
  const seq = new asn1js.Sequence({
    value: dn.map((rdn) => {
      const atvs = rdn.map(
        (a) =>
          new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: a.oid }), attributeValue(a)] }),
      );
      const encoded = atvs.map((atv) => ({ atv, der: new Uint8Array(atv.toBER()) }));
      encoded.sort((x, y) => compareBytes(x.der, y.der));
      return new asn1js.Set({ value: encoded.map((e) => e.atv) });
    }),
  });
  return pkijs.RelativeDistinguishedNames.fromBER(seq.toBER());
}

function escapeValue(value: string): string {
  let out = value.replace(/["+,;<>\\]/g, (c) => `\\${c}`).replace(/\0/g, "\\00");
  if (out.startsWith(" ") || out.startsWith("#")) out = `\\${out}`;
  if (out.endsWith(" ") && out.length > 1) out = `${out.slice(0, -1)}\\ `;
  return out;
}

function bytesToHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** A DER Name as an RFC 4514 string (last RDN first, short names as OpenSSL prints them). */
export function formatName(nameDer: Uint8Array): string {
  const name = parseDer(nameDer, "the name");
  if (!(name instanceof asn1js.Sequence)) throw malformed("the name is not a SEQUENCE");
  const rdns = name.valueBlock.value.map((rdn) => {
    if (!(rdn instanceof asn1js.Set)) throw malformed("a name component is not a SET");
    return rdn.valueBlock.value
      .map((atv) => {
        const [oid, value] = atv instanceof asn1js.Sequence ? atv.valueBlock.value : [];
        if (!(oid instanceof asn1js.ObjectIdentifier) || !value)
          throw malformed("a malformed name attribute");
        const id = oid.getValue();
        const type = TYPE_BY_OID.get(id)?.name ?? id;
        const text =
          value instanceof asn1js.BaseStringBlock
            ? escapeValue(value.getValue())
            : `#${bytesToHex(new Uint8Array(value.toBER()))}`;
        return `${type}=${text}`;
      })
      .join("+");
  });
  return rdns.reverse().join(",");
}

// ---------------------------------------------------------------------------------------------
// Signing

export interface CsrOptions {
  subject: string;
  /** Default sha256; sha384 for P-384 and sha512 for P-521 keys. Ignored for EdDSA. */
  hash?: HashName;
  /** Default from the key type: rsa-pkcs1, ecdsa or eddsa. */
  scheme?: SignatureScheme;
}

export interface CertificateOptions extends CsrOptions {
  /** Validity in days, default 365. */
  days?: number;
  /** Positive serial number (unsigned big-endian); default 16 random bytes. */
  serial?: Uint8Array;
  /** Default the current time. */
  now?: Date;
}

interface SigningPlan {
  key: SpkiInfo;
  spki: Uint8Array;
  hash: HashName;
  scheme: SignatureScheme;
  algorithm: () => pkijs.AlgorithmIdentifier;
}

function plan(signer: Signer, opts: CsrOptions): SigningPlan {
  const spki = signer.key.spki;
  const key = spkiInfo(spki);
  if (key.keyType !== signer.key.keyType) {
    throw new CodesignError(
      "INTERNAL",
      `the signer says its key is ${signer.key.keyType} but its public key is ${key.keyType}`,
    );
  }
  if (opts.hash !== undefined && !HASH_NAMES.includes(opts.hash)) {
    throw invalid(`unsupported hash "${String(opts.hash)}"`, `use one of ${HASH_NAMES.join(", ")}`);
  }
  if (opts.scheme !== undefined && !SIGNATURE_SCHEMES.includes(opts.scheme)) {
    throw invalid(
      `unknown signature scheme "${String(opts.scheme)}"`,
      `use one of ${SIGNATURE_SCHEMES.join(", ")}`,
    );
  }
  const scheme = opts.scheme ?? defaultScheme(key.keyType);
  if (!schemeFitsKey(scheme, key.keyType)) {
    throw invalid(
      `the ${scheme} signature scheme does not fit a ${key.keyType} key`,
      key.keyType === "rsa" ? "use rsa-pkcs1 or rsa-pss" : `use ${defaultScheme(key.keyType)}`,
    );
  }
  const curve = key.curve?.name;
  const hash = opts.hash ?? (curve === "P-384" ? "sha384" : curve === "P-521" ? "sha512" : "sha256");
  return { key, spki, hash, scheme, algorithm: () => signatureAlgorithm(key.keyType, scheme, hash, curve) };
}

/**
 * Checks the token's signature against the public key we are about to publish: a key whose
 * stored public key or certificate belongs to another key would otherwise give a certificate
 * that nothing can verify. Skipped for keys Node cannot load.
 */
function checkSignature(p: SigningPlan, tbs: Uint8Array, sig: Uint8Array): void {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(p.spki), format: "der", type: "spki" });
  } catch {
    return;
  }
  let ok: boolean;
  try {
    if (p.scheme === "eddsa") ok = verify(null, tbs, key, sig);
    else if (p.scheme === "rsa-pss") {
      ok = verify(
        p.hash,
        tbs,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: HASH_BYTES[p.hash] },
        sig,
      );
    } else if (p.scheme === "ecdsa") ok = verify(p.hash, tbs, { key, dsaEncoding: "der" }, sig);
    else ok = verify(p.hash, tbs, key, sig);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new CodesignError("VERIFY_FAILED", "the key's signature does not verify with its public key", {
      hint: "the public key or certificate stored with this key on the token may belong to another key",
    });
  }
}

async function signTbs(signer: Signer, p: SigningPlan, tbs: Uint8Array): Promise<asn1js.BitString> {
  const sig = await signer.sign({
    hash: p.hash,
    scheme: p.scheme,
    input: { message: tbs },
    ...(p.scheme === "ecdsa" ? { format: "der" as const } : {}),
  });
  checkSignature(p, tbs, sig);
  return new asn1js.BitString({ valueHex: sig });
}

/** A DER PKCS#10 CertificationRequest for the signer's key, signed by it. */
export async function createCsr(signer: Signer, opts: CsrOptions): Promise<Uint8Array> {
  const dn = parseSubject(opts.subject);
  const p = plan(signer, opts);
  const csr = new pkijs.CertificationRequest({
    version: 0,
    subject: nameFor(dn),
    subjectPublicKeyInfo: pkijs.PublicKeyInfo.fromBER(p.spki),
    attributes: [],
  });
  // encodeTBS() is protected on CertificationRequest; toSchema(true) encodes the TBS the same way.
  const tbsSchema = csr.toSchema(true).valueBlock.value[0];
  if (!tbsSchema) throw new CodesignError("INTERNAL", "pkijs did not encode the certification request");
  const tbs = new Uint8Array(tbsSchema.toBER());
  csr.tbsView = tbs;
  csr.signatureAlgorithm = p.algorithm();
  csr.signatureValue = await signTbs(signer, p, tbs);
  return new Uint8Array(csr.toSchema(false).toBER());
}

const OID_KEY_USAGE = "2.5.29.15";
const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_SUBJECT_KEY_ID = "2.5.29.14";
const OID_AUTHORITY_KEY_ID = "2.5.29.35";
const OID_CODE_SIGNING = "1.3.6.1.5.5.7.3.3";

function extension(extnID: string, critical: boolean, value: asn1js.BaseBlock): pkijs.Extension {
  return new pkijs.Extension({ extnID, critical, extnValue: value.toBER() });
}

function x509Time(date: Date): pkijs.Time {
  const year = date.getUTCFullYear();
  const type = year >= 1950 && year < 2050 ? pkijs.TimeType.UTCTime : pkijs.TimeType.GeneralizedTime;
  return new pkijs.Time({ type, value: date });
}

function serialNumber(serial: Uint8Array | undefined): asn1js.Integer {
  let bytes: Uint8Array;
  if (serial === undefined) {
    bytes = new Uint8Array(randomBytes(16));
    bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40; // positive, and exactly 16 bytes
  } else {
    bytes = serial;
  }
  const int = unsignedInteger(bytes);
  const content = int.valueBlock.valueHexView;
  if (content.length > 20 || content.every((b) => b === 0)) {
    throw malformed("the serial number must be positive and at most 20 bytes encoded");
  }
  return int;
}

/**
 * A DER self-signed X.509 v3 code-signing certificate for the signer's key: keyUsage
 * digitalSignature (critical), extendedKeyUsage codeSigning, basicConstraints CA:FALSE,
 * subject and authority key identifiers; valid from 5 minutes ago for `days` days.
 */
export async function createSelfSignedCertificate(
  signer: Signer,
  opts: CertificateOptions,
): Promise<Uint8Array> {
  const dn = parseSubject(opts.subject);
  const p = plan(signer, opts);
  const days = opts.days ?? 365;
  if (!Number.isInteger(days) || days < 1) {
    throw invalid(
      `invalid validity of ${String(days)} days`,
      "give --days as a whole number of days, at least 1",
    );
  }
  const nowMs = Math.floor((opts.now ?? new Date()).getTime() / 1000) * 1000;
  if (!Number.isFinite(nowMs)) throw malformed("invalid current time");
  const notBefore = new Date(nowMs - 5 * 60 * 1000);
  const notAfter = new Date(nowMs + days * 86_400_000);
  if (!(notAfter.getUTCFullYear() <= 9999)) throw malformed(`a validity of ${days} days is too long`);

  const keyId = createHash("sha1").update(p.key.publicKey).digest();
  const cert = new pkijs.Certificate({
    version: 2,
    serialNumber: serialNumber(opts.serial),
    signature: p.algorithm(),
    issuer: nameFor(dn),
    subject: nameFor(dn),
    notBefore: x509Time(notBefore),
    notAfter: x509Time(notAfter),
    subjectPublicKeyInfo: pkijs.PublicKeyInfo.fromBER(p.spki),
    extensions: [
      extension(OID_BASIC_CONSTRAINTS, false, new pkijs.BasicConstraints({ cA: false }).toSchema()),
      // digitalSignature is bit 0: one byte 0x80 with 7 unused bits
      extension(
        OID_KEY_USAGE,
        true,
        new asn1js.BitString({ valueHex: new Uint8Array([0x80]), unusedBits: 7 }),
      ),
      extension(
        OID_EXT_KEY_USAGE,
        false,
        new pkijs.ExtKeyUsage({ keyPurposes: [OID_CODE_SIGNING] }).toSchema(),
      ),
      extension(OID_SUBJECT_KEY_ID, false, new asn1js.OctetString({ valueHex: keyId })),
      extension(
        OID_AUTHORITY_KEY_ID,
        false,
        new pkijs.AuthorityKeyIdentifier({
          keyIdentifier: new asn1js.OctetString({ valueHex: keyId }),
        }).toSchema(),
      ),
    ],
  });
  const tbs = new Uint8Array(cert.encodeTBS().toBER());
  cert.tbsView = tbs;
  cert.signatureAlgorithm = p.algorithm();
  cert.signatureValue = await signTbs(signer, p, tbs);
  return new Uint8Array(cert.toSchema(false).toBER());
}

// ---------------------------------------------------------------------------------------------
// Reading certificates

function parseCertificate(certDer: Uint8Array): pkijs.Certificate {
  const der = derOrPem(certDer, ["CERTIFICATE"]);
  try {
    return new pkijs.Certificate({ schema: parseDer(der, "the certificate") });
  } catch (cause) {
    if (cause instanceof CodesignError) throw cause;
    throw new CodesignError("INVALID_INPUT", "not an X.509 certificate", {
      hint: "give a DER or PEM certificate",
      cause,
    });
  }
}

export { certificatePublicKey } from "./asn1.js";

export interface CertificateDescription {
  /** RFC 4514, e.g. `CN=Name,O=Org,C=DE`. */
  subject: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  /** Upper-case hex, as `openssl x509 -serial` prints it. */
  serialHex: string;
  hasCodeSigningEku: boolean;
}

export function describeCertificate(certDer: Uint8Array): CertificateDescription {
  const cert = parseCertificate(certDer);
  let serial = cert.serialNumber.valueBlock.valueHexView;
  if (serial.length > 1 && serial[0] === 0) serial = serial.subarray(1);
  const eku = cert.extensions?.find((e) => e.extnID === OID_EXT_KEY_USAGE);
  let hasCodeSigningEku = false;
  if (eku) {
    try {
      const usage = pkijs.ExtKeyUsage.fromBER(eku.extnValue.valueBlock.valueHexView);
      hasCodeSigningEku = usage.keyPurposes.includes(OID_CODE_SIGNING);
    } catch {
      hasCodeSigningEku = false;
    }
  }
  return {
    subject: formatName(new Uint8Array(cert.subject.valueBeforeDecode)),
    issuer: formatName(new Uint8Array(cert.issuer.valueBeforeDecode)),
    notBefore: cert.notBefore.value,
    notAfter: cert.notAfter.value,
    serialHex: bytesToHex(serial).toUpperCase(),
    hasCodeSigningEku,
  };
}
