import type { Template } from "pkcs11js";
import {
  certificatePublicKey,
  curveFromEcParams,
  spkiFromEc,
  spkiFromEdwards,
  spkiFromRsa,
} from "../pki/asn1.js";
import { CodesignError } from "../errors.js";
import { CKK_EC_EDWARDS, type Pkcs11Module, type Session, type TokenEntry } from "./module.js";
import type { KeyType } from "../signer.js";
import type { Pkcs11Uri } from "./uri.js";
import { keyUri } from "./uri.js";

export interface KeyInfo {
  /** Private-key handle; absent when only the public half could be seen (no login). */
  handle?: Buffer;
  label: string;
  id: Uint8Array;
  keyType: KeyType;
  bits?: number;
  curve?: string;
  /** DER SubjectPublicKeyInfo, when the public key or a certificate is readable. */
  spki?: Uint8Array;
  /** DER certificate object on the token with the key's CKA_ID. */
  certificate?: Uint8Array;
  /**
   * CKA_ALWAYS_AUTHENTICATE (PIV/YubiKey style): every signature needs its own context-specific
   * login. Known only for private keys; false when the key was inferred from public objects.
   * Optional only so that hand-made KeyInfo values in older tests still type-check; listKeys
   * always sets it.
   */
  alwaysAuthenticate?: boolean;
  /** Signing mechanisms the token offers for this key type, pkcs11-tool style names. */
  mechanisms: string[];
  uri: string;
}

export type MechanismTable = ReturnType<Pkcs11Module["mechanisms"]>;

function keyTypeOf(m: Pkcs11Module, raw: Buffer | undefined): KeyType | undefined {
  if (!raw) return undefined;
  const value = raw.length >= 8 ? Number(raw.readBigUInt64LE(0)) : raw.readUInt32LE(0);
  if (value === m.lib.CKK_RSA) return "rsa";
  if (value === m.lib.CKK_EC) return "ec";
  if (value === CKK_EC_EDWARDS) return "eddsa";
  return undefined;
}

/** pkcs11-tool's spelling: CKM_SHA256_RSA_PKCS → SHA256-RSA-PKCS. */
export function mechanismDisplayName(ckmName: string): string {
  return ckmName.replace(/^CKM_/, "").replaceAll("_", "-");
}

export function signingMechanismsFor(keyType: KeyType, table: MechanismTable): string[] {
  const pattern =
    keyType === "rsa"
      ? /^CKM_(SHA\d*_)?RSA_PKCS(_PSS)?$/
      : keyType === "ec"
        ? /^CKM_ECDSA(_SHA\d+)?$/
        : /^CKM_EDDSA$/;
  return [...table.values()]
    .filter((m) => m.sign && pattern.test(m.name))
    .map((m) => mechanismDisplayName(m.name))
    .sort();
}

function objectTemplate(m: Pkcs11Module, cls: number, uri: Pkcs11Uri | undefined): Template {
  const t: Template = [{ type: m.lib.CKA_CLASS, value: cls }];
  if (uri?.path.object !== undefined)
    t.push({ type: m.lib.CKA_LABEL, value: Buffer.from(uri.path.object, "utf8") });
  if (uri?.path.id !== undefined) t.push({ type: m.lib.CKA_ID, value: Buffer.from(uri.path.id) });
  return t;
}

function findById(s: Session, cls: number, id: Uint8Array): Buffer | undefined {
  const lib = s.module.lib;
  const tmpl: Template = [
    { type: lib.CKA_CLASS, value: cls },
    { type: lib.CKA_ID, value: Buffer.from(id) },
  ];
  if (cls === lib.CKO_CERTIFICATE) tmpl.push({ type: lib.CKA_CERTIFICATE_TYPE, value: lib.CKC_X_509 });
  return s.find(tmpl, 1)[0];
}

export function readCertificate(s: Session, id: Uint8Array): Uint8Array | undefined {
  const lib = s.module.lib;
  const cert = findById(s, lib.CKO_CERTIFICATE, id);
  if (!cert) return undefined;
  const value = s.attributes(cert, [lib.CKA_VALUE]).get(lib.CKA_VALUE);
  return value && value.length > 0 ? new Uint8Array(value) : undefined;
}

/** The public key as SPKI: from the key object itself, its public twin, or its certificate. */
function publicKeyOf(
  s: Session,
  object: Buffer,
  keyType: KeyType,
  id: Uint8Array,
  certificate: Uint8Array | undefined,
): { spki?: Uint8Array; bits?: number; curve?: string } {
  const lib = s.module.lib;
  if (keyType === "rsa") {
    let a = s.attributes(object, [lib.CKA_MODULUS, lib.CKA_PUBLIC_EXPONENT]);
    if (!a.get(lib.CKA_MODULUS) || !a.get(lib.CKA_PUBLIC_EXPONENT)) {
      const pub = findById(s, lib.CKO_PUBLIC_KEY, id);
      if (pub) a = s.attributes(pub, [lib.CKA_MODULUS, lib.CKA_PUBLIC_EXPONENT]);
    }
    const modulus = a.get(lib.CKA_MODULUS);
    const exponent = a.get(lib.CKA_PUBLIC_EXPONENT);
    if (modulus && exponent) {
      const firstNonZero = modulus.findIndex((b) => b !== 0);
      const bits =
        firstNonZero < 0
          ? 0
          : (modulus.length - firstNonZero) * 8 - Math.clz32(modulus[firstNonZero] ?? 0) + 24;
      return { spki: spkiFromRsa(modulus, exponent), bits };
    }
    const spki = certificate ? certificateKey(certificate) : undefined;
    return spki ? { spki } : {};
  }
  const params = s.attributes(object, [lib.CKA_EC_PARAMS]).get(lib.CKA_EC_PARAMS);
  const curve = params ? curveFromEcParams(params).name : undefined;
  let point = s.attributes(object, [lib.CKA_EC_POINT]).get(lib.CKA_EC_POINT);
  if (!point) {
    const pub = findById(s, lib.CKO_PUBLIC_KEY, id);
    if (pub) point = s.attributes(pub, [lib.CKA_EC_POINT]).get(lib.CKA_EC_POINT);
  }
  const base = curve === undefined ? {} : { curve };
  if (params && point) {
    return {
      ...base,
      spki: keyType === "eddsa" ? spkiFromEdwards(params, point) : spkiFromEc(params, point),
    };
  }
  const spki = certificate ? certificateKey(certificate) : undefined;
  return spki ? { ...base, spki } : base;
}

/** A token certificate's public key, or undefined when the certificate is unreadable. */
function certificateKey(certDer: Uint8Array): Uint8Array | undefined {
  try {
    return certificatePublicKey(certDer);
  } catch {
    return undefined;
  }
}

function describeObject(
  s: Session,
  object: Buffer,
  table: MechanismTable,
  isPrivate: boolean,
): KeyInfo | undefined {
  const lib = s.module.lib;
  const a = s.attributes(object, [lib.CKA_KEY_TYPE, lib.CKA_LABEL, lib.CKA_ID]);
  const keyType = keyTypeOf(s.module, a.get(lib.CKA_KEY_TYPE));
  if (!keyType) return undefined; // secret keys, DSA, GOST...: not signing keys we handle
  const label = a.get(lib.CKA_LABEL)?.toString("utf8") ?? "";
  const id = new Uint8Array(a.get(lib.CKA_ID) ?? Buffer.alloc(0));
  const certificate = id.length > 0 ? readCertificate(s, id) : undefined;
  const pub = publicKeyOf(s, object, keyType, id, certificate);
  const always = isPrivate
    ? s.attributes(object, [lib.CKA_ALWAYS_AUTHENTICATE]).get(lib.CKA_ALWAYS_AUTHENTICATE)
    : undefined;
  const t = s.token;
  return {
    ...(isPrivate ? { handle: object } : {}),
    alwaysAuthenticate: always !== undefined && always.length > 0 && always[0] !== 0,
    label,
    id,
    keyType,
    ...pub,
    ...(certificate ? { certificate } : {}),
    mechanisms: signingMechanismsFor(keyType, table),
    uri: keyUri({
      token: t.label,
      ...(t.serial ? { serial: t.serial } : {}),
      ...(label ? { object: label } : {}),
      ...(id.length > 0 ? { id } : {}),
      type: "private",
    }),
  };
}

/**
 * The keys on a token. Logged in: every private key. Not logged in: what is public (public
 * keys and certificates), from which the private keys are inferred.
 */
export function listKeys(s: Session, table: MechanismTable, uri?: Pkcs11Uri): KeyInfo[] {
  const lib = s.module.lib;
  const privates = s.find(objectTemplate(s.module, lib.CKO_PRIVATE_KEY, uri));
  if (privates.length > 0) {
    return privates.flatMap((o) => describeObject(s, o, table, true) ?? []);
  }
  return s
    .find(objectTemplate(s.module, lib.CKO_PUBLIC_KEY, uri))
    .flatMap((o) => describeObject(s, o, table, false) ?? []);
}

/** Exactly one private key for the URI's object/id, or an error naming what is there. */
export function findPrivateKey(
  s: Session,
  table: MechanismTable,
  uri: Pkcs11Uri,
): KeyInfo & { handle: Buffer } {
  if (uri.path.type !== undefined && uri.path.type !== "private") {
    throw new CodesignError(
      "INVALID_INPUT",
      `the key URI names an object of type=${uri.path.type}; signing needs type=private`,
      {
        hint: "use the URI printed by `codesign keys`",
      },
    );
  }
  if (uri.path.object === undefined && uri.path.id === undefined) {
    throw new CodesignError("INVALID_INPUT", "the key URI names no key (it has neither object= nor id=)", {
      hint: "use the URI printed by `codesign keys`",
    });
  }
  const keys = listKeys(s, table, uri).filter(
    (k): k is KeyInfo & { handle: Buffer } => k.handle !== undefined,
  );
  const [only] = keys;
  if (keys.length === 1 && only) return only;
  const wanted = [
    uri.path.object !== undefined ? `object=${uri.path.object}` : "",
    uri.path.id !== undefined ? `id=${Buffer.from(uri.path.id).toString("hex")}` : "",
  ]
    .filter(Boolean)
    .join(" ");
  if (keys.length === 0) {
    throw new CodesignError("KEY_NOT_FOUND", `no private key with ${wanted} on token "${s.token.label}"`, {
      hint: "run `codesign keys` to list the keys and their URIs",
    });
  }
  throw new CodesignError(
    "AMBIGUOUS",
    `${keys.length} private keys match ${wanted} on token "${s.token.label}"`,
    {
      hint: "add id= to the URI (see `codesign keys`)",
    },
  );
}

export function tokenUri(t: TokenEntry): string {
  return keyUri({
    token: t.label,
    ...(t.manufacturer ? { manufacturer: t.manufacturer } : {}),
    ...(t.model ? { model: t.model } : {}),
    ...(t.serial ? { serial: t.serial } : {}),
  });
}
