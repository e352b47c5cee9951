/**
 * The signer's certificate: `--cert FILE`, else the certificate object on the token with the
 * key's CKA_ID. Either way it must hold the token key's public key — the most common mistake in
 * HSM signing is a certificate for another key.
 */
import { pemDecode, pemEncode } from "./asn1.js";
import { CodesignError } from "../errors.js";
import { readRegularFile } from "../util/files.js";
import { certificatePublicKey, describeCertificate } from "./x509.js";

/** What a certificate is checked against: the token key's URI, public key and stored certificate. */
export interface KeyForCertificate {
  uri: string;
  spki?: Uint8Array | undefined;
  certificate?: Uint8Array | undefined;
}

export interface SignerCertificate {
  der: Uint8Array;
  source: "file" | "token";
  /** The --cert path when source is "file". */
  file?: string;
}

/** A certificate bundle larger than this is not a certificate file. */
const CERT_FILE_MAX = 16 * 1024 * 1024;

/** Every certificate in a PEM file (in order), or the one certificate of a DER file. */
export async function readCertificates(file: string): Promise<Uint8Array[]> {
  // Bounded, regular files only: a FIFO or /dev/zero given as a certificate fails at once.
  const bytes = await readRegularFile(file, "the certificate file", CERT_FILE_MAX);
  if (bytes[0] === 0x30) {
    describeCertificate(bytes); // a DER file that is no certificate fails here, naming the problem
    return [bytes];
  }
  const certs = pemDecode(bytes)
    .filter((b) => b.label === "CERTIFICATE")
    .map((b) => b.der);
  if (certs.length === 0) {
    throw new CodesignError(
      "INVALID_INPUT",
      `${file} holds no certificate (neither DER nor a PEM CERTIFICATE block)`,
      {
        hint: "give an X.509 certificate in PEM or DER",
      },
    );
  }
  for (const der of certs) describeCertificate(der); // fails early, naming the problem, on a bad one
  return certs;
}

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Throws INVALID_INPUT (exit 2) when the certificate is not for this key. */
export function assertCertificateMatchesKey(
  certDer: Uint8Array,
  key: KeyForCertificate,
  origin: string,
): void {
  if (!key.spki) return; // nothing to compare with (the token hides the public key)
  if (!equalBytes(certificatePublicKey(certDer), key.spki)) {
    const subject = describeCertificate(certDer).subject;
    throw new CodesignError(
      "INVALID_INPUT",
      `the certificate ${origin} (${subject}) is not for the key ${key.uri}: its public key differs`,
      {
        hint: "give the certificate issued for this key (compare with `codesign pubkey --key …`), or use the key the certificate belongs to",
      },
    );
  }
}

export async function resolveSignerCertificate(
  key: KeyForCertificate,
  certFile?: string,
): Promise<SignerCertificate> {
  if (certFile !== undefined) {
    const [der] = await readCertificates(certFile);
    if (!der) throw new CodesignError("INTERNAL", "readCertificates returned nothing");
    assertCertificateMatchesKey(der, key, `in ${certFile}`);
    return { der, source: "file", file: certFile };
  }
  if (!key.certificate) {
    throw new CodesignError(
      "CERT_NOT_FOUND",
      `no certificate for the key ${key.uri} on the token (none with its CKA_ID)`,
      {
        hint: "give one with --cert FILE, or put one on the token: `codesign cert selfsign --store` for testing, or import the CA-issued one with the key's id",
      },
    );
  }
  assertCertificateMatchesKey(key.certificate, key, "on the token");
  return { der: key.certificate, source: "token" };
}

export const certificatePem = (der: Uint8Array): string => pemEncode("CERTIFICATE", der);
