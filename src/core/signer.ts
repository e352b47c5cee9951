/**
 * The signing contract: everything that produces signatures (a token key, later a remote
 * token or a tool) stands behind this one method, and the commands never care which.
 */
import { CodesignError } from "./errors.js";

export type HashName = "sha256" | "sha384" | "sha512";
export const HASH_NAMES: readonly HashName[] = ["sha256", "sha384", "sha512"];

export type KeyType = "rsa" | "ec" | "eddsa";
export type SignatureScheme = "rsa-pkcs1" | "rsa-pss" | "ecdsa" | "eddsa";
export const SIGNATURE_SCHEMES: readonly SignatureScheme[] = ["rsa-pkcs1", "rsa-pss", "ecdsa", "eddsa"];

/** ECDSA only: DER `SEQUENCE { r, s }` (OpenSSL, X.509, CMS) or IEEE P1363 `r‖s` (JOSE, WebCrypto). */
export type SignatureFormat = "der" | "p1363";

export interface KeyDescription {
  keyType: KeyType;
  /** RSA modulus size. */
  bits?: number;
  /** Named curve for EC and EdDSA keys, e.g. `P-256`, `Ed25519`. */
  curve?: string;
  /** DER SubjectPublicKeyInfo. */
  spki: Uint8Array;
}

export type SignInput =
  /** A digest already computed on the host with `hash` (files are always hashed on the host). */
  | { digest: Uint8Array }
  /** Small data (signed attributes, a TBSCertificate, EdDSA input) given whole to the signer. */
  | { message: Uint8Array };

export interface SignRequest {
  hash: HashName;
  scheme: SignatureScheme;
  input: SignInput;
  /** Default `der`. */
  format?: SignatureFormat;
}

export interface Signer {
  readonly key: KeyDescription;
  sign(request: SignRequest): Promise<Uint8Array>;
}

export function defaultScheme(keyType: KeyType): SignatureScheme {
  return keyType === "rsa" ? "rsa-pkcs1" : keyType === "ec" ? "ecdsa" : "eddsa";
}

export function schemeFitsKey(scheme: SignatureScheme, keyType: KeyType): boolean {
  return defaultScheme(keyType) === scheme || (keyType === "rsa" && scheme === "rsa-pss");
}

/**
 * The scheme a signature uses: the one asked for, else the key type's default. One that does not
 * fit the key is a usage error (exit 2), found before anything is signed.
 */
export function schemeForKey(keyType: KeyType, asked: SignatureScheme | undefined): SignatureScheme {
  const scheme = asked ?? defaultScheme(keyType);
  if (!schemeFitsKey(scheme, keyType)) {
    throw new CodesignError("USAGE", `the ${scheme} scheme does not fit this ${keyType.toUpperCase()} key`, {
      hint: keyType === "rsa" ? "use rsa-pkcs1 or rsa-pss" : `use ${defaultScheme(keyType)}`,
    });
  }
  return scheme;
}
