import * as pkijs from "pkijs";
import type { Template } from "pkcs11js";
import { ecParamsForCurve } from "../pki/asn1.js";
import { CodesignError } from "../errors.js";
import type { Session } from "./module.js";
import { fromPkcs11Error } from "./ckr.js";

export type KeySpec = { type: "rsa"; bits: number } | { type: "ec"; curve: "P-256" | "P-384" | "P-521" };

/** Generates a non-extractable signing key pair on the token (needs a logged-in R/W session). */
export function generateKeyPair(s: Session, spec: KeySpec, label: string, id: Uint8Array): void {
  const lib = s.module.lib;
  const common: Template = [
    { type: lib.CKA_TOKEN, value: true },
    { type: lib.CKA_LABEL, value: Buffer.from(label, "utf8") },
    { type: lib.CKA_ID, value: Buffer.from(id) },
  ];
  const pub: Template = [...common, { type: lib.CKA_VERIFY, value: true }];
  const priv: Template = [
    ...common,
    { type: lib.CKA_PRIVATE, value: true },
    { type: lib.CKA_SENSITIVE, value: true },
    { type: lib.CKA_EXTRACTABLE, value: false },
    { type: lib.CKA_SIGN, value: true },
  ];
  let mechanism: number;
  if (spec.type === "rsa") {
    mechanism = lib.CKM_RSA_PKCS_KEY_PAIR_GEN;
    pub.push(
      { type: lib.CKA_MODULUS_BITS, value: spec.bits },
      { type: lib.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
    );
  } else {
    mechanism = lib.CKM_EC_KEY_PAIR_GEN;
    pub.push({ type: lib.CKA_EC_PARAMS, value: Buffer.from(ecParamsForCurve(spec.curve)) });
  }
  try {
    s.p11.C_GenerateKeyPair(s.handle, { mechanism }, pub, priv);
  } catch (e) {
    throw fromPkcs11Error(e, `generating key "${label}"`);
  }
}

/**
 * Stores an X.509 certificate on the token with the key's CKA_ID and label (what keytool and
 * osslsigncode look for), replacing an older certificate with the same CKA_ID.
 */
export function storeCertificate(s: Session, certDer: Uint8Array, label: string, id: Uint8Array): void {
  const lib = s.module.lib;
  let cert: pkijs.Certificate;
  try {
    cert = pkijs.Certificate.fromBER(certDer);
  } catch (cause) {
    throw new CodesignError("INVALID_INPUT", "the certificate to store is not DER X.509", { cause });
  }
  const existing = s.find(
    [
      { type: lib.CKA_CLASS, value: lib.CKO_CERTIFICATE },
      { type: lib.CKA_ID, value: Buffer.from(id) },
    ],
    100,
  );
  const serial = cert.serialNumber.toBER();
  try {
    s.p11.C_CreateObject(s.handle, [
      { type: lib.CKA_CLASS, value: lib.CKO_CERTIFICATE },
      { type: lib.CKA_CERTIFICATE_TYPE, value: lib.CKC_X_509 },
      { type: lib.CKA_TOKEN, value: true },
      { type: lib.CKA_PRIVATE, value: false },
      { type: lib.CKA_LABEL, value: Buffer.from(label, "utf8") },
      { type: lib.CKA_ID, value: Buffer.from(id) },
      { type: lib.CKA_SUBJECT, value: Buffer.from(cert.subject.toSchema().toBER()) },
      { type: lib.CKA_ISSUER, value: Buffer.from(cert.issuer.toSchema().toBER()) },
      { type: lib.CKA_SERIAL_NUMBER, value: Buffer.from(serial) },
      { type: lib.CKA_VALUE, value: Buffer.from(certDer) },
    ]);
    for (const old of existing) s.p11.C_DestroyObject(s.handle, old);
  } catch (e) {
    throw fromPkcs11Error(e, "storing the certificate on the token");
  }
}
