/**
 * Revocation of the certificates of a validated path (every one but the trust anchor), in one
 * place for every caller of path.ts' validatePath:
 * - CRLs given as files (`--crl`): a genuine CRL of the issuer that lists the certificate refuses it;
 * - online (`--online`): OCSP from the Authority Information Access extension (RFC 6960; the
 *   answer signed by the issuer or by a responder the issuer certified with id-kp-OCSPSigning,
 *   fresh, about this certificate, echoing our nonce when it echoes one), then CRLs from the CRL
 *   distribution points (RFC 5280 §6.3; signed by the issuer, fresh, complete: no delta, indirect
 *   or reason-partitioned CRLs). Every request has a deadline and a size bound; answers are cached
 *   per URL for the run.
 * Policy when online: a certificate with neither OCSP nor CDP gets a warning (nothing to ask); a
 * certificate that names sources none of which gives a valid answer is refused — unsure means no.
 * A revoked certificate is refused whatever the revocation time (see docs/verify.md).
 */
import * as asn1js from "asn1js";
import { randomBytes, X509Certificate } from "node:crypto";
import * as pkijs from "pkijs";
import { pemDecode } from "./asn1.js";
import { CodesignError } from "../errors.js";
import { fetchBounded, type BoundedRequest } from "../util/http.js";

/** Each request's deadline. */
export const REVOCATION_REQUEST_TIMEOUT_MS = 10_000;
/** All online checks of one verification together. */
export const REVOCATION_BUDGET_MS = 60_000;
export const OCSP_RESPONSE_MAX_BYTES = 1024 * 1024;
export const CRL_MAX_BYTES = 10 * 1024 * 1024;
/** Clocks differ: thisUpdate may be this far ahead, nextUpdate this far behind. */
const FRESHNESS_SKEW_MS = 5 * 60 * 1000;
/** Sources tried per certificate, at most (a certificate may list many). */
const MAX_SOURCES = 4;

const OID_AD_OCSP = "1.3.6.1.5.5.7.48.1";
const OID_OCSP_BASIC = "1.3.6.1.5.5.7.48.1.1";
const OID_OCSP_NONCE = "1.3.6.1.5.5.7.48.1.2";
const OID_KP_OCSP_SIGNING = "1.3.6.1.5.5.7.3.9";
const OID_AIA = "1.3.6.1.5.5.7.1.1";
const OID_CDP = "2.5.29.31";
const OID_EKU = "2.5.29.37";
const OID_KEY_USAGE = "2.5.29.15";
const OID_CRL_NUMBER = "2.5.29.20";
const OID_DELTA_CRL = "2.5.29.27";
const OID_IDP = "2.5.29.28";
const OID_AKI = "2.5.29.35";

/** What was learnt about one certificate (reported by `verify --json` as `revocation`). */
export interface RevocationCheck {
  /** Which chain: "signer", "TSA". */
  chain: string;
  /** The certificate's subject. */
  certificate: string;
  /** Its serial number, hex. */
  serial: string;
  /** How: OCSP, a fetched CRL, a --crl file, or not at all ("none": it names no source). */
  method: "ocsp" | "crl" | "crl-file" | "none";
  /** The responder or distribution point that answered. */
  url?: string;
  status: "good" | "unchecked";
}

/** Answers fetched during one run, per URL (shared by every verification of a run, e.g. `verify --tree`). */
export interface RevocationCache {
  answers: Map<string, Promise<unknown>>;
}

export const newRevocationCache = (): RevocationCache => ({ answers: new Map() });

/**
 * What validatePath checks revocation with: pass one object (from {@link newRevocation}) to every
 * validatePath of a verification; `checked` and `warnings` are filled in as paths are checked.
 */
export interface Revocation {
  /** CRLs given as files (`--crl`). */
  crls?: readonly pkijs.CertificateRevocationList[] | undefined;
  /** Fetch OCSP and CRLs named by the certificates (`--online`). */
  online?: boolean | undefined;
  cache?: RevocationCache | undefined;
  /** Online checks stop after this time (epoch ms). */
  deadline?: number | undefined;
  checked?: RevocationCheck[] | undefined;
  warnings?: string[] | undefined;
}

/** A Revocation for one verification: its own deadline and report, the run's cache. */
export function newRevocation(o: {
  crls?: readonly pkijs.CertificateRevocationList[] | undefined;
  online?: boolean | undefined;
  cache?: RevocationCache | undefined;
}): Revocation & { checked: RevocationCheck[]; warnings: string[] } {
  return {
    crls: o.crls ?? [],
    online: o.online ?? false,
    cache: o.cache ?? newRevocationCache(),
    deadline: Date.now() + REVOCATION_BUDGET_MS,
    checked: [],
    warnings: [],
  };
}

const subjectOf = (c: pkijs.Certificate): string => {
  try {
    return new X509Certificate(new Uint8Array(c.toSchema().toBER())).subject.replace(/\n/g, ", ");
  } catch {
    return "(unreadable subject)";
  }
};
const serialOf = (c: pkijs.Certificate): string =>
  Buffer.from(c.serialNumber.valueBlock.valueHexView).toString("hex").toUpperCase();
const ext = (exts: readonly pkijs.Extension[] | undefined, oid: string) =>
  exts?.find((e) => e.extnID === oid);
const errText = (e: unknown): string => {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === "TimeoutError" || err.name === "AbortError") return "no answer in time";
  const code = err.cause?.code;
  if (code === "ECONNREFUSED") return "connection refused (ECONNREFUSED)";
  if (code === "ENOTFOUND") return "host not found (ENOTFOUND)";
  return code ?? err.cause?.message ?? err.message ?? String(e);
};

/** Checks every certificate of `path` (leaf first, anchor last) but the anchor. Throws VERIFY_FAILED. */
export async function checkPathRevocation(
  path: readonly pkijs.Certificate[],
  rev: Revocation,
  at: Date,
  what: string,
): Promise<void> {
  for (let i = 0; i + 1 < path.length; i++) {
    const cert = path[i] as pkijs.Certificate;
    const issuer = path[i + 1] as pkijs.Certificate;
    if (await checkFileCrls(cert, issuer, rev.crls ?? [], at, what))
      record(rev, {
        chain: what,
        certificate: subjectOf(cert),
        serial: serialOf(cert),
        method: "crl-file",
        status: "good",
      });
    if (rev.online) await checkOnline(cert, issuer, rev, at, what);
  }
}

function record(rev: Revocation, r: RevocationCheck): void {
  rev.checked ??= [];
  const same = (x: RevocationCheck) =>
    x.chain === r.chain && x.serial === r.serial && x.certificate === r.certificate && x.method === r.method;
  if (!rev.checked.some(same)) rev.checked.push(r);
}

function warn(rev: Revocation, w: string): void {
  rev.warnings ??= [];
  if (!rev.warnings.includes(w)) rev.warnings.push(w);
}

function revokedError(
  cert: pkijs.Certificate,
  what: string,
  when: Date | undefined,
  at: Date,
  how: string,
): CodesignError {
  const after = when && when.getTime() > at.getTime();
  return new CodesignError(
    "VERIFY_FAILED",
    `the ${what} chain has a revoked certificate: ${subjectOf(cert)}${when ? ` (revoked ${when.toISOString()})` : ""}, by ${how}`,
    {
      hint: after
        ? `revoked after the time the chain is judged at (${at.toISOString()}); codesign refuses it anyway: the revocation may mean the key was compromised earlier`
        : `checked for ${at.toISOString()}`,
    },
  );
}

/** True when a genuine file CRL of the issuer covers the certificate (and does not list it). */
async function checkFileCrls(
  cert: pkijs.Certificate,
  issuer: pkijs.Certificate,
  crls: readonly pkijs.CertificateRevocationList[],
  at: Date,
  what: string,
): Promise<boolean> {
  let covered = false;
  for (const crl of crls) {
    if (!crl.issuer.isEqual(cert.issuer)) continue;
    let genuine = false;
    try {
      genuine = await crl.verify({ issuerCertificate: issuer });
    } catch {
      genuine = false;
    }
    if (!genuine) continue;
    const entry = revokedEntry(crl, cert);
    if (entry)
      throw revokedError(
        cert,
        what,
        entry.revocationDate.value,
        at,
        `the CRL of ${subjectOf(issuer)} (--crl)`,
      );
    covered = true;
  }
  return covered;
}

const revokedEntry = (crl: pkijs.CertificateRevocationList, cert: pkijs.Certificate) =>
  crl.revokedCertificates?.find((r) => r.userCertificate.isEqual(cert.serialNumber));

/** http(s) URIs of the OCSP responders (AIA) and CRL distribution points, and any other URIs named. */
export function revocationSources(cert: pkijs.Certificate): {
  ocsp: string[];
  crl: string[];
  other: string[];
} {
  const out = { ocsp: [] as string[], crl: [] as string[], other: [] as string[] };
  const put = (list: string[], uri: string) => {
    if (/^https?:\/\//i.test(uri)) {
      if (!list.includes(uri)) list.push(uri);
    } else out.other.push(uri);
  };
  const aia: unknown = ext(cert.extensions, OID_AIA)?.parsedValue;
  if (aia instanceof pkijs.InfoAccess) {
    for (const d of aia.accessDescriptions) {
      if (d.accessMethod === OID_AD_OCSP && d.accessLocation.type === 6)
        put(out.ocsp, String(d.accessLocation.value));
    }
  }
  const cdp: unknown = ext(cert.extensions, OID_CDP)?.parsedValue;
  if (cdp instanceof pkijs.CRLDistributionPoints) {
    for (const dp of cdp.distributionPoints) {
      const names = dp.distributionPoint;
      if (!Array.isArray(names)) continue;
      for (const n of names as pkijs.GeneralName[]) {
        if (n.type !== 6) continue;
        // An indirect or reason-partitioned CRL is not complete for this certificate: not used.
        if (dp.cRLIssuer || dp.reasons) out.other.push(String(n.value));
        else put(out.crl, String(n.value));
      }
    }
  }
  return out;
}

async function checkOnline(
  cert: pkijs.Certificate,
  issuer: pkijs.Certificate,
  rev: Revocation,
  at: Date,
  what: string,
): Promise<void> {
  const src = revocationSources(cert);
  const base = { chain: what, certificate: subjectOf(cert), serial: serialOf(cert) };
  if (src.ocsp.length === 0 && src.crl.length === 0 && src.other.length === 0) {
    warn(
      rev,
      `no revocation information for ${base.certificate} in the ${what} chain (no OCSP responder, no CRL distribution point): its revocation was not checked`,
    );
    record(rev, { ...base, method: "none", status: "unchecked" });
    return;
  }
  const errors: string[] = [];
  for (const url of src.ocsp.slice(0, MAX_SOURCES)) {
    let answer: OcspAnswer;
    try {
      answer = await cached(rev, `ocsp ${url} ${base.serial} ${subjectOf(issuer)}`, () =>
        ocspStatus(cert, issuer, url, rev),
      );
    } catch (e) {
      errors.push(`OCSP ${url}: ${errText(e)}`);
      continue;
    }
    if (answer.status === "revoked") throw revokedError(cert, what, answer.time, at, `OCSP (${url})`);
    if (answer.status === "unknown") {
      errors.push(`OCSP ${url}: the responder does not know the certificate`);
      continue;
    }
    record(rev, { ...base, method: "ocsp", url, status: "good" });
    return;
  }
  for (const url of src.crl.slice(0, MAX_SOURCES)) {
    let crl: pkijs.CertificateRevocationList;
    try {
      crl = await cached(rev, `crl ${url}`, () => fetchCrl(url, rev));
      await checkCrlFor(crl, cert, issuer);
    } catch (e) {
      errors.push(`CRL ${url}: ${errText(e)}`);
      continue;
    }
    const entry = revokedEntry(crl, cert);
    if (entry) throw revokedError(cert, what, entry.revocationDate.value, at, `the CRL at ${url}`);
    record(rev, { ...base, method: "crl", url, status: "good" });
    return;
  }
  for (const uri of src.other)
    errors.push(`${uri}: not fetched (codesign fetches complete CRLs over http(s) only)`);
  throw new CodesignError(
    "VERIFY_FAILED",
    `could not check revocation of ${base.certificate} in the ${what} chain: ${errors.join("; ")}`,
    {
      hint: "the certificate names where its status is published, and no valid answer came from there; codesign refuses when unsure (retry later, or verify offline with --crl FILE)",
    },
  );
}

function cached<T>(rev: Revocation, key: string, f: () => Promise<T>): Promise<T> {
  // A spent budget is this verification's, not the URL's: it is not cached.
  if ((rev.deadline ?? Infinity) <= Date.now())
    return Promise.reject(new Error(`the ${REVOCATION_BUDGET_MS / 1000} s for revocation checks are spent`));
  rev.cache ??= newRevocationCache();
  let p = rev.cache.answers.get(key) as Promise<T> | undefined;
  if (!p) {
    p = f();
    // A failure is cached too (a responder that is down is not asked again in this run).
    p.catch(() => undefined);
    rev.cache.answers.set(key, p);
  }
  return p;
}

/** The signal for one request: its own deadline, never beyond the verification's. */
function deadlineSignal(rev: Revocation): AbortSignal {
  const left = (rev.deadline ?? Date.now() + REVOCATION_BUDGET_MS) - Date.now();
  if (left <= 0) throw new Error(`the ${REVOCATION_BUDGET_MS / 1000} s for revocation checks are spent`);
  return AbortSignal.timeout(Math.min(REVOCATION_REQUEST_TIMEOUT_MS, left));
}

/** One HTTP exchange (util/http.ts), bounded; an empty answer is an error here. */
async function httpBounded(url: string, o: BoundedRequest): Promise<Uint8Array> {
  // A redirected POST would turn into a GET: an OCSP responder that redirects is not used.
  const bytes = await fetchBounded(url, o);
  if (bytes.length === 0) throw new Error("an empty answer");
  return bytes;
}

type OcspAnswer = { status: "good" } | { status: "revoked"; time: Date } | { status: "unknown" };

const OCSP_STATUS = [
  "successful",
  "malformedRequest",
  "internalError",
  "tryLater",
  "4",
  "sigRequired",
  "unauthorized",
];

const ab = (u: Uint8Array): ArrayBuffer => Uint8Array.from(u).buffer;

/** Asks one responder about `cert`; throws a plain Error for any answer that is not valid. */
async function ocspStatus(
  cert: pkijs.Certificate,
  issuer: pkijs.Certificate,
  url: string,
  rev: Revocation,
): Promise<OcspAnswer> {
  const req = new pkijs.OCSPRequest();
  // SHA-1 CertIDs: the one every responder must understand (RFC 5019 §2.1.1); an identifier, not a signature.
  await req.createForCertificate(cert, { hashAlgorithm: "SHA-1", issuerCertificate: issuer });
  const nonce = new asn1js.OctetString({ valueHex: ab(new Uint8Array(randomBytes(16))) }).toBER();
  req.tbsRequest.requestExtensions = [new pkijs.Extension({ extnID: OID_OCSP_NONCE, extnValue: nonce })];
  const asked = req.tbsRequest.requestList[0]?.reqCert as pkijs.CertID;
  const bytes = await httpBounded(url, {
    body: new Uint8Array(req.toSchema(true).toBER()),
    contentType: "application/ocsp-request",
    accept: "application/ocsp-response",
    max: OCSP_RESPONSE_MAX_BYTES,
    signal: deadlineSignal(rev),
  });
  let basic: pkijs.BasicOCSPResponse;
  try {
    const resp = pkijs.OCSPResponse.fromBER(ab(bytes));
    const status = resp.responseStatus.valueBlock.valueDec;
    if (status !== 0) throw new Error(`the responder answered ${OCSP_STATUS[status] ?? status}`);
    if (resp.responseBytes?.responseType !== OID_OCSP_BASIC) throw new Error("not a basic OCSP response");
    basic = pkijs.BasicOCSPResponse.fromBER(ab(resp.responseBytes.response.valueBlock.valueHexView));
  } catch (e) {
    throw new Error(`not a valid OCSP response (${(e as Error).message})`);
  }
  await checkOcspSigner(basic, issuer);
  const echoed = ext(basic.tbsResponseData.responseExtensions, OID_OCSP_NONCE);
  if (echoed && !Buffer.from(echoed.extnValue.valueBlock.valueHexView).equals(Buffer.from(nonce))) {
    throw new Error("the response's nonce is not the request's (a replay?)");
  }
  const single = basic.tbsResponseData.responses.find((r) => r.certID.isEqual(asked));
  if (!single) throw new Error("the response is not about this certificate");
  const now = Date.now();
  if (single.thisUpdate.getTime() > now + FRESHNESS_SKEW_MS)
    throw new Error(`the response is from the future (thisUpdate ${single.thisUpdate.toISOString()})`);
  if (single.nextUpdate && single.nextUpdate.getTime() < now - FRESHNESS_SKEW_MS)
    throw new Error(`the response is stale (nextUpdate ${single.nextUpdate.toISOString()})`);
  const s = single.certStatus as asn1js.BaseBlock;
  switch (s.idBlock.tagNumber) {
    case 0:
      return { status: "good" };
    case 1: {
      const inner = (s as asn1js.Constructed).valueBlock.value?.[0];
      if (!(inner instanceof asn1js.GeneralizedTime)) throw new Error("a revoked status without a time");
      return { status: "revoked", time: inner.toDate() };
    }
    default:
      return { status: "unknown" };
  }
}

const ekuOf = (c: pkijs.Certificate): string[] => {
  const v: unknown = ext(c.extensions, OID_EKU)?.parsedValue;
  return v instanceof pkijs.ExtKeyUsage ? v.keyPurposes : [];
};
const validNow = (c: pkijs.Certificate): boolean =>
  c.notBefore.value.getTime() <= Date.now() && Date.now() <= c.notAfter.value.getTime();

/**
 * The response must be signed by the issuer itself, or by a responder certificate the issuer
 * signed, with id-kp-OCSPSigning, valid now (RFC 6960 §4.2.2.2). The responder's own revocation
 * is not checked (id-pkix-ocsp-nocheck is assumed).
 */
async function checkOcspSigner(basic: pkijs.BasicOCSPResponse, issuer: pkijs.Certificate): Promise<void> {
  const crypto = pkijs.getCrypto(true);
  const signedBy = async (c: pkijs.Certificate): Promise<boolean> => {
    try {
      return await crypto.verifyWithPublicKey(
        basic.tbsResponseData.tbsView,
        basic.signature,
        c.subjectPublicKeyInfo,
        basic.signatureAlgorithm,
      );
    } catch {
      return false;
    }
  };
  if (await signedBy(issuer)) return;
  const problems: string[] = [];
  for (const c of basic.certs ?? []) {
    if (!(await signedBy(c))) continue;
    let issued = false;
    try {
      issued = c.issuer.isEqual(issuer.subject) && (await c.verify(issuer));
    } catch {
      issued = false;
    }
    if (!issued) problems.push(`its signer ${subjectOf(c)} is not certified by ${subjectOf(issuer)}`);
    else if (!ekuOf(c).includes(OID_KP_OCSP_SIGNING))
      problems.push(`its signer ${subjectOf(c)} lacks the OCSPSigning extended key usage`);
    else if (!validNow(c)) problems.push(`its signer ${subjectOf(c)} is not valid now`);
    else return;
  }
  throw new Error(
    `the response is not signed by the issuer nor by a responder it authorised${problems.length > 0 ? `: ${problems.join("; ")}` : ""}`,
  );
}

/** A CRL from a distribution point, DER or PEM, bounded. */
async function fetchCrl(url: string, rev: Revocation): Promise<pkijs.CertificateRevocationList> {
  const bytes = await httpBounded(url, {
    accept: "application/pkix-crl, application/x-pkcs7-crl, */*",
    max: CRL_MAX_BYTES,
    signal: deadlineSignal(rev),
  });
  const der = bytes[0] === 0x30 ? bytes : pemDecode(bytes).find((b) => b.label === "X509 CRL")?.der;
  if (!der) throw new Error("the answer is not a CRL (neither DER nor PEM)");
  try {
    return pkijs.CertificateRevocationList.fromBER(der);
  } catch (e) {
    throw new Error(`the answer is not a readable CRL (${(e as Error).message})`);
  }
}

/** The CRL must be the issuer's own, complete for this certificate, signed by it and current. */
async function checkCrlFor(
  crl: pkijs.CertificateRevocationList,
  cert: pkijs.Certificate,
  issuer: pkijs.Certificate,
): Promise<void> {
  if (!crl.issuer.isEqual(cert.issuer))
    throw new Error("the CRL is not the issuer's (indirect CRLs are not used)");
  const ku: unknown = ext(issuer.extensions, OID_KEY_USAGE)?.parsedValue;
  if (ku instanceof asn1js.BitString && ((ku.valueBlock.valueHexView[0] ?? 0) & 0x02) === 0)
    throw new Error("the issuer's keyUsage lacks cRLSign");
  let genuine = false;
  try {
    genuine = await crl.verify({ issuerCertificate: issuer });
  } catch {
    genuine = false;
  }
  if (!genuine) throw new Error(`the CRL's signature does not verify with the key of ${subjectOf(issuer)}`);
  const now = Date.now();
  if (crl.thisUpdate.value.getTime() > now + FRESHNESS_SKEW_MS)
    throw new Error(`the CRL is from the future (thisUpdate ${crl.thisUpdate.value.toISOString()})`);
  if (crl.nextUpdate && crl.nextUpdate.value.getTime() < now - FRESHNESS_SKEW_MS)
    throw new Error(`the CRL is stale (nextUpdate ${crl.nextUpdate.value.toISOString()})`);
  for (const e of crl.crlExtensions?.extensions ?? []) {
    if (e.extnID === OID_DELTA_CRL) throw new Error("a delta CRL (delta CRLs are not used)");
    if (e.extnID === OID_IDP) {
      const idp: unknown = e.parsedValue;
      if (!(idp instanceof pkijs.IssuingDistributionPoint))
        throw new Error("an unreadable issuingDistributionPoint");
      if (idp.indirectCRL || idp.onlySomeReasons !== undefined || idp.onlyContainsAttributeCerts)
        throw new Error("a partial CRL (indirect or by reasons): not complete for this certificate");
      const isCa = (() => {
        const bc: unknown = ext(cert.extensions, "2.5.29.19")?.parsedValue;
        return bc instanceof pkijs.BasicConstraints && Boolean(bc.cA);
      })();
      if ((idp.onlyContainsUserCerts && isCa) || (idp.onlyContainsCACerts && !isCa))
        throw new Error("the CRL does not cover this kind of certificate");
      continue;
    }
    if (e.critical && e.extnID !== OID_CRL_NUMBER && e.extnID !== OID_AKI)
      throw new Error(`the CRL has a critical extension codesign does not understand (${e.extnID})`);
  }
}
