/**
 * Certification path validation: PKI.js' CertificateChainValidationEngine builds the path and
 * checks what it knows (every link's signature, name chaining, validity of every certificate
 * including the anchor, issuers being CAs with keyCertSign, nameConstraints, policies, CRLs).
 * What it lacks is added here, in one place: basicConstraints pathLenConstraint and refusing
 * unknown critical extensions (RFC 5280 §4.2, §6.1.4). Trust anchors are loaded here too.
 */
import * as asn1js from "asn1js";
import { X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import tls from "node:tls";
import * as pkijs from "pkijs";
import { pemDecode } from "./asn1.js";
import { readCertificates } from "./certificate.js";
import { checkPathRevocation, type Revocation } from "./revocation.js";
import { CodesignError } from "../errors.js";
import { readRegularFile } from "../util/files.js";

export const EXT = {
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  issuerAltName: "2.5.29.18",
  basicConstraints: "2.5.29.19",
  nameConstraints: "2.5.29.30",
  crlDistributionPoints: "2.5.29.31",
  certificatePolicies: "2.5.29.32",
  policyMappings: "2.5.29.33",
  authorityKeyIdentifier: "2.5.29.35",
  policyConstraints: "2.5.29.36",
  extKeyUsage: "2.5.29.37",
  inhibitAnyPolicy: "2.5.29.54",
  authorityInfoAccess: "1.3.6.1.5.5.7.1.1",
} as const;

/**
 * Extensions whose meaning is enforced (by the engine, this file or policy.ts) or that carry no
 * constraint (identifiers, names, pointers). A critical extension outside this set fails the path.
 */
const UNDERSTOOD = new Set<string>(Object.values(EXT));

/** Where the system trust store is on common distributions; Node's bundled roots are the fallback. */
export const SYSTEM_BUNDLES = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/cert.pem",
];
const ANCHOR_FILE_MAX = 16 * 1024 * 1024;

export interface Anchors {
  certs: pkijs.Certificate[];
  /** The --ca files, or the system bundle used, or "node" for Node's bundled roots. */
  source: string;
}

const parseCert = (der: Uint8Array): pkijs.Certificate => pkijs.Certificate.fromBER(der);

/** Every certificate of every --ca file (PEM bundles and DER); without any, the system store. */
export async function loadAnchors(caFiles: readonly string[]): Promise<Anchors> {
  if (caFiles.length > 0) {
    const certs: pkijs.Certificate[] = [];
    for (const f of caFiles) for (const der of await readCertificates(f)) certs.push(parseCert(der));
    return { certs, source: caFiles.join(", ") };
  }
  const bundle = SYSTEM_BUNDLES.find((f) => existsSync(f));
  const pems = bundle
    ? pemDecode(await readRegularFile(bundle, "the system trust store", ANCHOR_FILE_MAX))
        .filter((b) => b.label === "CERTIFICATE")
        .map((b) => b.der)
    : tls.rootCertificates.flatMap((p) => pemDecode(p).map((b) => b.der));
  const certs: pkijs.Certificate[] = [];
  for (const der of pems) {
    try {
      certs.push(parseCert(der));
    } catch {
      // one unreadable root in a system bundle does not make the others unusable
    }
  }
  return { certs, source: bundle ?? "node" };
}

/**
 * Each certificate's DER, computed once per object: encoding re-parses and re-encodes the TBS, and
 * path validation compares every anchor with the leaf. The entry stands while the fields the
 * encoding is made of (tbsView, signatureAlgorithm, signatureValue) are the same objects; a
 * certificate given another of them is encoded afresh.
 */
interface DerEntry {
  tbs: Uint8Array;
  alg: pkijs.AlgorithmIdentifier;
  sig: asn1js.BitString;
  der: Uint8Array;
}
const ders = new WeakMap<pkijs.Certificate, DerEntry>();

function cachedDer(c: pkijs.Certificate): Uint8Array {
  const hit = ders.get(c);
  if (hit && hit.tbs === c.tbsView && hit.alg === c.signatureAlgorithm && hit.sig === c.signatureValue)
    return hit.der;
  const der = new Uint8Array(c.toSchema().toBER());
  ders.set(c, { tbs: c.tbsView, alg: c.signatureAlgorithm, sig: c.signatureValue, der });
  return der;
}

/** A certificate's DER (a copy: the caller may keep or change it). */
export const certDer = (c: pkijs.Certificate): Uint8Array => cachedDer(c).slice();

/** A certificate's subject as OpenSSL prints it ("CN=x, O=y"). */
export function subjectOf(c: pkijs.Certificate): string {
  try {
    return new X509Certificate(cachedDer(c)).subject.replace(/\n/g, ", ");
  } catch {
    return "(unreadable subject)";
  }
}

const sameCert = (a: pkijs.Certificate, b: pkijs.Certificate): boolean =>
  a === b || Buffer.from(cachedDer(a)).equals(Buffer.from(cachedDer(b)));

const fail = (message: string, hint?: string): CodesignError =>
  new CodesignError("VERIFY_FAILED", message, hint ? { hint } : {});

export const extension = (c: pkijs.Certificate, oid: string): pkijs.Extension | undefined =>
  c.extensions?.find((e) => e.extnID === oid);

/** basicConstraints read from its own DER (PKI.js reports an absent pathLenConstraint as 0). */
export function basicConstraints(c: pkijs.Certificate): { cA: boolean; pathLen?: number } | undefined {
  const ext = extension(c, EXT.basicConstraints);
  if (!ext) return undefined;
  const parsed = asn1js.fromBER(ext.extnValue.valueBlock.valueHexView);
  const items = parsed.result instanceof asn1js.Sequence ? parsed.result.valueBlock.value : [];
  const ca = items.find((i) => i instanceof asn1js.Boolean);
  const len = items.find((i) => i instanceof asn1js.Integer);
  return {
    cA: ca instanceof asn1js.Boolean ? ca.getValue() : false,
    ...(len instanceof asn1js.Integer ? { pathLen: len.valueBlock.valueDec } : {}),
  };
}

const validAt = (c: pkijs.Certificate, at: Date): boolean =>
  c.notBefore.value.getTime() <= at.getTime() && at.getTime() <= c.notAfter.value.getTime();

function dateProblem(c: pkijs.Certificate, at: Date): string {
  return `${subjectOf(c)} is not valid at ${at.toISOString()} (valid ${c.notBefore.value.toISOString()} to ${c.notAfter.value.toISOString()})`;
}

/** The checks the engine does not make, over a built path (leaf first, anchor last). */
function checkPathExtras(path: pkijs.Certificate[], what: string): void {
  for (const c of path) {
    const unknown = (c.extensions ?? []).filter((e) => e.critical && !UNDERSTOOD.has(e.extnID));
    if (unknown.length > 0) {
      throw fail(
        `the ${what} chain has a critical extension codesign does not understand (${unknown.map((e) => e.extnID).join(", ")}) in ${subjectOf(c)}`,
        "RFC 5280: a certificate with an unrecognised critical extension must be rejected",
      );
    }
  }
  // nameConstraints, directoryName: RFC 5280 §7.1 wants the constraint's RDNs as a prefix of the
  // subject; PKI.js accepts them anywhere in it, so the prefix rule is checked here.
  for (let k = path.length - 1; k >= 1; k--) {
    const nc: unknown = extension(path[k] as pkijs.Certificate, EXT.nameConstraints)?.parsedValue;
    if (!(nc instanceof pkijs.NameConstraints)) continue;
    const permitted = (nc.permittedSubtrees ?? []).filter((t) => t.base.type === 4);
    if (permitted.length === 0) continue;
    for (const c of path.slice(0, k)) {
      const rdns = c.subject.typesAndValues;
      if (rdns.length === 0) continue;
      const inside = permitted.some((t) => {
        const want = (t.base.value as pkijs.RelativeDistinguishedNames).typesAndValues;
        return (
          want.length <= rdns.length &&
          want.every((w, i) => (rdns[i] as pkijs.AttributeTypeAndValue).isEqual(w))
        );
      });
      if (!inside) {
        throw fail(
          `the ${what} chain breaks a name constraint: ${subjectOf(c)} is outside the names ${subjectOf(path[k] as pkijs.Certificate)} may issue`,
        );
      }
    }
  }
  // pathLenConstraint of the CA at index k bounds the non-self-issued intermediates below it.
  for (let k = 1; k < path.length; k++) {
    const ca = path[k] as pkijs.Certificate;
    const pathLen = basicConstraints(ca)?.pathLen;
    if (pathLen === undefined) continue;
    const below = path.slice(1, k).filter((c) => !c.subject.isEqual(c.issuer)).length;
    if (below > pathLen) {
      throw fail(
        `the ${what} chain is too long for ${subjectOf(ca)}: pathLenConstraint ${pathLen}, ${below} intermediate CA(s) below it`,
      );
    }
  }
}

export interface PathOptions {
  /** The time every certificate must be valid at: the trusted signing time, else now. */
  at: Date;
  /** Names the chain in messages: "signer", "TSA". */
  what: string;
  /**
   * Revocation checking of every certificate of the path but the anchor (revocation.ts): CRL files
   * and, with `online`, OCSP and CRL distribution points. Pass the same object (from
   * `newRevocation`) to every validatePath of one verification: it carries the per-run cache, the
   * deadline and, filled in, what was checked (`checked`) and `warnings`.
   */
  revocation?: Revocation | undefined;
  /** Shorthand for `revocation: { crls }`. */
  crls?: readonly pkijs.CertificateRevocationList[] | undefined;
}

/**
 * Builds and validates the path from `leaf` through `others` (certificates the signature carries)
 * to one of `anchors`. Returns it leaf first, anchor last; throws VERIFY_FAILED naming the problem.
 * A leaf that is itself an anchor (a pinned self-signed signer) is trusted as itself.
 */
export async function validatePath(
  leaf: pkijs.Certificate,
  others: readonly pkijs.Certificate[],
  anchors: Anchors,
  o: PathOptions,
): Promise<pkijs.Certificate[]> {
  if (anchors.certs.some((a) => sameCert(a, leaf))) {
    if (!validAt(leaf, o.at)) throw fail(`the ${o.what} certificate ${dateProblem(leaf, o.at)}`);
    checkPathExtras([leaf], o.what);
    return [leaf];
  }
  const intermediates = others.filter(
    (c) => !sameCert(c, leaf) && !anchors.certs.some((a) => sameCert(a, c)),
  );
  const engine = new pkijs.CertificateChainValidationEngine({
    trustedCerts: anchors.certs,
    // The engine takes the last certificate as the one to validate.
    certs: [...intermediates, leaf],
    checkDate: o.at,
  });
  let result: pkijs.CertificateChainValidationEngineVerifyResult;
  try {
    result = await engine.verify({ passedWhenNotRevValues: false });
  } catch (e) {
    result = { result: false, resultCode: -1, resultMessage: (e as Error).message };
  }
  if (!result.result) {
    if (result.resultCode === 8) {
      // Name the certificates that are out of date: the engine only says one is.
      const candidates = [
        leaf,
        ...intermediates,
        ...anchors.certs.filter((a) => issuesAny(a, [leaf, ...intermediates])),
      ];
      const stale = candidates.filter((c) => !validAt(c, o.at)).map((c) => dateProblem(c, o.at));
      throw fail(
        `the ${o.what} chain has a certificate that is not valid: ${stale.join("; ") || result.resultMessage}`,
        "a trusted timestamp from the signing time keeps a signature valid after its certificate expires",
      );
    }
    throw fail(
      `the ${o.what} certificate (${subjectOf(leaf)}) does not chain to a trust anchor: ${result.resultMessage}`,
      anchors.source === "node" || anchors.source.startsWith("/etc/")
        ? "give the issuing CA with --ca FILE (without it the system trust store is used)"
        : "check that the --ca files hold the issuing root, and that the chain's constraints hold",
    );
  }
  const path = result.certificatePath ?? [];
  if (path.length === 0) throw fail(`the ${o.what} chain could not be built`);
  checkPathExtras(path, o.what);
  const revocation = o.revocation ?? (o.crls && o.crls.length > 0 ? { crls: o.crls } : undefined);
  if (revocation) await checkPathRevocation(path, revocation, o.at, o.what);
  return path;
}

/** CRLs from files (PEM "X509 CRL" blocks or DER), read bounded; INVALID_INPUT naming a bad one. */
export async function loadCrls(files: readonly string[]): Promise<pkijs.CertificateRevocationList[]> {
  const out: pkijs.CertificateRevocationList[] = [];
  for (const f of files) {
    const bytes = await readRegularFile(f, "the CRL file", ANCHOR_FILE_MAX);
    const ders =
      bytes[0] === 0x30
        ? [bytes]
        : pemDecode(bytes)
            .filter((b) => b.label === "X509 CRL")
            .map((b) => b.der);
    if (ders.length === 0) {
      throw new CodesignError("INVALID_INPUT", `${f} holds no CRL (neither DER nor a PEM X509 CRL block)`, {
        hint: "give a CRL in PEM or DER",
      });
    }
    for (const der of ders) {
      try {
        out.push(pkijs.CertificateRevocationList.fromBER(der));
      } catch (cause) {
        throw new CodesignError("INVALID_INPUT", `${f} holds a CRL that cannot be read`, { cause });
      }
    }
  }
  return out;
}

const issuesAny = (a: pkijs.Certificate, certs: pkijs.Certificate[]): boolean =>
  certs.some((c) => c.issuer.isEqual(a.subject));
