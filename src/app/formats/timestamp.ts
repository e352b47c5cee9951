/** The RFC 3161 step formats share: every SignerInfo stamped, with fail-over across servers. */
import type * as pkijs from "pkijs";
import { timestampSignedData } from "../../core/pki/timestamp.js";
import type { FileDetail, SignOptions } from "../options.js";

export async function timestamp(
  signed: pkijs.SignedData,
  o: SignOptions,
  attribute: string,
): Promise<Pick<FileDetail, "timestamp">> {
  const t = o.timestamp;
  if (!t || t.urls.length === 0) return {};
  const [ts] = await timestampSignedData(
    signed,
    t.urls,
    {
      what: "timestamp server",
      ...(t.retries === undefined ? {} : { retries: t.retries }),
      ...(t.timeoutSeconds === undefined ? {} : { timeoutMs: t.timeoutSeconds * 1000 }),
      ...(t.onFailure ? { onFailure: t.onFailure } : {}),
    },
    attribute,
    // Strict by default: a TSA that chains to no anchor is a failed server (the next URL is tried).
    { tsaCa: t.tsaCa, allowUntrustedTsa: t.allowUntrustedTsa },
  );
  return ts ? { timestamp: { url: ts.url, genTime: ts.genTime.toISOString() } } : {};
}
