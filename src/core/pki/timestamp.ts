/**
 * RFC 3161 timestamps: a request over a SignerInfo's signature value (with a nonce and certReq),
 * a response checked — HTTP status, PKI status, imprint, nonce and the TSA's own signature —
 * before its token is embedded as the unsigned attribute id-aa-timeStampToken. Servers are tried
 * in order with retries (src/core/failover.ts).
 */
import * as asn1js from "asn1js";
import { createHash, randomBytes } from "node:crypto";
import * as pkijs from "pkijs";
import { hashAlgorithm } from "./asn1.js";
import { OID, encodeSignedData } from "./cms.js";
import { CodesignError } from "../errors.js";
import { tryEach, type FailoverOptions } from "../util/failover.js";
import { checkTimestampToken } from "./verify.js";

const buf = (u: Uint8Array): ArrayBuffer => u.slice().buffer as ArrayBuffer;
const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

export interface TimestampResult {
  /** The TimeStampToken (a ContentInfo) as an asn1js value, ready to embed. */
  token: pkijs.ContentInfo;
  genTime: Date;
  url: string;
}

/** One request to one server; any problem is thrown as a plain Error for the fail-over to report. */
async function requestOnce(
  url: string,
  signature: Uint8Array,
  signal: AbortSignal,
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
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/timestamp-query", Accept: "application/timestamp-reply" },
    body: new Uint8Array(req.toSchema().toBER()),
    signal,
  });
  if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`.trim());
  const body = new Uint8Array(await res.arrayBuffer());
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
  const tst = await checkTimestampToken(resp.timeStampToken, signature);
  if (!tst.nonce) throw new Error("the response carries no nonce (the request had one)");
  if (!equal(new Uint8Array(tst.nonce.valueBlock.valueHexView), nonce))
    throw new Error("the response's nonce does not match the request (a replay?)");
  return { token: resp.timeStampToken, genTime: tst.genTime, url };
}

/** A verified timestamp over `signature` from the first server that gives one. */
export async function fetchTimestamp(
  signature: Uint8Array,
  urls: readonly string[],
  failover: FailoverOptions,
): Promise<TimestampResult> {
  for (const u of urls) {
    if (!/^https?:\/\//i.test(u)) {
      throw new CodesignError("USAGE", `timestamp URL ${u} is not http:// or https://`, {
        hint: "give the TSA's URL, e.g. http://timestamp.digicert.com",
      });
    }
  }
  const { value } = await tryEach(urls, (url, signal) => requestOnce(url, signature, signal), {
    what: "timestamp server",
    ...failover,
  });
  return value;
}

/**
 * Timestamps every SignerInfo of `signed` in place, as the unsigned attribute `attribute`:
 * id-aa-timeStampToken for CMS (RFC 3161 appendix A), Microsoft's SPC_RFC3161_OBJID for
 * Authenticode. Both stamp the SignerInfo's signature value.
 */
export async function timestampSignedData(
  signed: pkijs.SignedData,
  urls: readonly string[],
  failover: FailoverOptions,
  attribute: string = OID.timeStampToken,
): Promise<TimestampResult[]> {
  const results: TimestampResult[] = [];
  for (const si of signed.signerInfos) {
    const ts = await fetchTimestamp(new Uint8Array(si.signature.valueBlock.valueHexView), urls, failover);
    const attr = new pkijs.Attribute({ type: attribute, values: [ts.token.toSchema()] });
    const others = si.unsignedAttrs?.attributes.filter((a) => a.type !== attribute) ?? [];
    si.unsignedAttrs = new pkijs.SignedAndUnsignedAttributes({ type: 1, attributes: [...others, attr] });
    results.push(ts);
  }
  return results;
}

export { encodeSignedData };
