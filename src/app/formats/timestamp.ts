/**
 * The RFC 3161 step formats share: every SignerInfo stamped, with fail-over across servers, within
 * the run's timestamp scheduler (concurrency and rate limits, a circuit breaker per URL).
 */
import type * as pkijs from "pkijs";
import { timestampSignedData } from "../../core/pki/timestamp.js";
import type { FileDetail } from "../options.js";
import type { FormatContext } from "./contract.js";

export async function timestamp(
  signed: pkijs.SignedData,
  ctx: Pick<FormatContext, "options" | "timestamps">,
  attribute: string,
): Promise<Pick<FileDetail, "timestamp">> {
  const t = ctx.options.timestamp;
  if (!t || t.urls.length === 0) return {};
  const [ts] = await timestampSignedData(
    signed,
    t.urls,
    {
      what: "timestamp server",
      ...(t.retries === undefined ? {} : { retries: t.retries }),
      ...(t.timeoutSeconds === undefined ? {} : { timeoutMs: t.timeoutSeconds * 1000 }),
      ...(t.onFailure ? { onFailure: t.onFailure } : {}),
      scheduler: ctx.timestamps,
    },
    attribute,
    // Strict by default: a TSA that chains to no anchor is a failed server (the next URL is tried).
    { tsaCa: t.tsaCa, allowUntrustedTsa: t.allowUntrustedTsa },
  );
  return ts ? { timestamp: { url: ts.url, genTime: ts.genTime.toISOString() } } : {};
}
