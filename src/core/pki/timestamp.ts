/**
 * RFC 3161 timestamps: a request over a SignerInfo's signature value (with a nonce and certReq),
 * a response checked — HTTP status, PKI status, imprint, nonce and the TSA's own signature —
 * before its token is embedded as the unsigned attribute id-aa-timeStampToken. Servers are tried
 * in order with retries (src/core/util/failover.ts), within a run's scheduler when there is one.
 */
import * as asn1js from "asn1js";
import { createHash, randomBytes } from "node:crypto";
import * as pkijs from "pkijs";
import { hashAlgorithm } from "./algorithms.js";
import { OID, encodeSignedData } from "./cms.js";
import { CodesignError } from "../errors.js";
import { tryEach, type FailoverOptions } from "../util/failover.js";
import { fetchBounded } from "../util/http.js";
import { loadAnchors, subjectOf, type Anchors } from "./path.js";
import { inspectTimestampToken, validateTsaChain, type CheckedTimestamp } from "./verify.js";

/** How far a TSA's answer may go: more is not a timestamp response. */
export const TSA_RESPONSE_MAX_BYTES = 1024 * 1024;
/** 307/308 redirects followed per request (other redirects would turn the POST into a GET). */
const MAX_REDIRECTS = 3;

/** Trust in the TSA at signing time (the 5th parameter of timestampSignedData). */
/** --tsa-ca, else $CODESIGN_TSA_CA (a path list), else (empty) the system store. */
function tsaAnchorFiles(trust: TimestampTrustOptions): readonly string[] {
  if (trust.tsaCa && trust.tsaCa.length > 0) return trust.tsaCa;
  return (process.env["CODESIGN_TSA_CA"] ?? "").split(":").filter((f) => f !== "");
}

export interface TimestampTrustOptions {
  /** Anchors for the TSA's certificate (PEM bundles or DER); default $CODESIGN_TSA_CA, else the system store. */
  tsaCa?: readonly string[] | undefined;
  /** Accept a TSA that does not chain to `tsaCa` (its token is still checked otherwise). */
  allowUntrustedTsa?: boolean | undefined;
}

const buf = (u: Uint8Array): ArrayBuffer => Uint8Array.from(u).buffer;
const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

export interface TimestampResult {
  /** The TimeStampToken (a ContentInfo) as an asn1js value, ready to embed. */
  token: pkijs.ContentInfo;
  genTime: Date;
  url: string;
}

/**
 * What a run (one scheduler) learns once instead of once per file: its TSA anchors, and the
 * chains of the TSA certificates that validated. A known certificate's path is reused while the
 * genTime lies within the validity of every certificate on it; otherwise it is validated again.
 */
interface RunTrust {
  anchors: Promise<Anchors> | undefined;
  paths: Map<string, pkijs.Certificate[]>;
}
const runs = new WeakMap<object, RunTrust>();

function runTrust(scheduler: object | undefined): RunTrust {
  const fresh = (): RunTrust => ({ anchors: undefined, paths: new Map() });
  if (!scheduler) return fresh();
  let run = runs.get(scheduler);
  if (!run) runs.set(scheduler, (run = fresh()));
  return run;
}

/** The TSA's chain to `anchors` at the genTime, validated once per certificate and run. */
async function checkTsaTrust(checked: CheckedTimestamp, run: RunTrust, anchors: () => Promise<Anchors>) {
  // The certificate as received (its TBS bytes and signature): a certificate that differs in any
  // byte that is signed is validated afresh.
  const key = createHash("sha256")
    .update(checked.cert.tbsView)
    .update(checked.cert.signatureValue.valueBlock.valueHexView)
    .digest("hex");
  const at = checked.tst.genTime.getTime();
  const known = run.paths.get(key);
  const within = (c: pkijs.Certificate) =>
    c.notBefore.value.getTime() <= at && at <= c.notAfter.value.getTime();
  if (known?.every(within)) return;
  run.paths.set(key, await validateTsaChain(checked, await anchors()));
}

/** One request to one server; any problem is thrown as a plain Error for the fail-over to report. */
async function requestOnce(
  url: string,
  signature: Uint8Array,
  signal: AbortSignal,
  trust: ((checked: CheckedTimestamp) => Promise<void>) | undefined,
  allowUntrusted: boolean,
): Promise<TimestampResult> {
  const nonce = new Uint8Array(randomBytes(8));
  nonce[0] = ((nonce[0] ?? 0) & 0x7f) | 0x01; // positive, no leading zero byte
  const req = new pkijs.TimeStampReq({
    version: 1,
    messageImprint: new pkijs.MessageImprint({
      hashAlgorithm: hashAlgorithm("sha256"),
      hashedMessage: new asn1js.OctetString({
        valueHex: buf(new Uint8Array(createHash("sha256").update(signature).digest())),
      }),
    }),
    nonce: new asn1js.Integer({ valueHex: buf(nonce) }),
    certReq: true,
  });
  const body = await fetchBounded(url, {
    body: new Uint8Array(req.toSchema().toBER()),
    contentType: "application/timestamp-query",
    accept: "application/timestamp-reply",
    max: TSA_RESPONSE_MAX_BYTES,
    signal, // the attempt's deadline, over the body too
    postRedirects: MAX_REDIRECTS,
  });
  let resp: pkijs.TimeStampResp;
  try {
    resp = pkijs.TimeStampResp.fromBER(buf(body));
  } catch {
    throw new Error(`the answer is not an RFC 3161 response (${body.length} bytes)`);
  }
  const status = resp.status.status;
  if (status !== 0 && status !== 1) {
    const words = resp.status.statusStrings?.map((s) => s.valueBlock.value).join("; ");
    throw new Error(`the server refused: PKI status ${status}${words ? ` (${words})` : ""}`);
  }
  if (!resp.timeStampToken) throw new Error("the response holds no timestamp token");
  const checked = await inspectTimestampToken(resp.timeStampToken, signature);
  const tst = checked.tst;
  if (trust) {
    try {
      await trust(checked);
    } catch (e) {
      if (!allowUntrusted) {
        throw new Error(
          `the TSA's certificate (${subjectOf(checked.cert)}) is not trusted: ${(e as Error).message} (--tsa-ca FILE, or --allow-untrusted-tsa)`,
        );
      }
    }
  }
  if (!tst.nonce) throw new Error("the response carries no nonce (the request had one)");
  if (!equal(new Uint8Array(tst.nonce.valueBlock.valueHexView), nonce))
    throw new Error("the response's nonce does not match the request (a replay?)");
  return { token: resp.timeStampToken, genTime: tst.genTime, url };
}

/**
 * A verified timestamp over `signature` from the first server that gives one. With `trust`, the
 * TSA's certificate must chain to its anchors (default the system store) and have the
 * timeStamping EKU, unless allowUntrustedTsa; an untrusted TSA counts as a failed server, and
 * the next URL is tried.
 */
export async function fetchTimestamp(
  signature: Uint8Array,
  urls: readonly string[],
  failover: FailoverOptions,
  trust?: TimestampTrustOptions,
): Promise<TimestampResult> {
  for (const u of urls) {
    if (!/^https?:\/\//i.test(u)) {
      throw new CodesignError("USAGE", `timestamp URL ${u} is not http:// or https://`, {
        hint: "give the TSA's URL, e.g. http://timestamp.digicert.com",
      });
    }
  }
  const run = runTrust(failover.scheduler);
  const getAnchors = trust ? () => (run.anchors ??= loadAnchors(tsaAnchorFiles(trust))) : undefined;
  if (getAnchors) await getAnchors(); // a bad --tsa-ca file is a usage error before any request
  const checkTrust = getAnchors ? (c: CheckedTimestamp) => checkTsaTrust(c, run, getAnchors) : undefined;
  const allow = trust?.allowUntrustedTsa ?? false;
  const { value } = await tryEach(
    urls,
    (url, signal) => requestOnce(url, signature, signal, checkTrust, allow),
    {
      what: "timestamp server",
      ...failover,
    },
  );
  return value;
}

/**
 * Timestamps every SignerInfo of `signed` in place, as the unsigned attribute `attribute`:
 * id-aa-timeStampToken for CMS (RFC 3161 appendix A), Microsoft's SPC_RFC3161_OBJID for
 * Authenticode. Both stamp the SignerInfo's signature value.
 *
 * `trust`: when given, the TSA is chained (TimestampTrustOptions; `{}` = the system store,
 * untrusted refused); without it the token is checked but the TSA's chain is not.
 */
export async function timestampSignedData(
  signed: pkijs.SignedData,
  urls: readonly string[],
  failover: FailoverOptions,
  attribute: string = OID.timeStampToken,
  trust?: TimestampTrustOptions,
): Promise<TimestampResult[]> {
  const results: TimestampResult[] = [];
  for (const si of signed.signerInfos) {
    const ts = await fetchTimestamp(
      new Uint8Array(si.signature.valueBlock.valueHexView),
      urls,
      failover,
      trust,
    );
    const attr = new pkijs.Attribute({ type: attribute, values: [ts.token.toSchema()] });
    const others = si.unsignedAttrs?.attributes.filter((a) => a.type !== attribute) ?? [];
    si.unsignedAttrs = new pkijs.SignedAndUnsignedAttributes({ type: 1, attributes: [...others, attr] });
    results.push(ts);
  }
  return results;
}

export { encodeSignedData };
