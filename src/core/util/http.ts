/**
 * One HTTP exchange with Node's fetch whose answer is read incrementally and never beyond a
 * bound, within a deadline (the caller's AbortSignal, which covers the body too). Used for
 * RFC 3161 timestamps and for OCSP and CRL fetching. Problems are plain Errors for the caller
 * to word.
 */

export interface BoundedRequest {
  /** POSTed when given; otherwise a GET. */
  body?: Uint8Array | undefined;
  contentType?: string | undefined;
  accept: string;
  /** The largest answer accepted, in bytes. */
  max: number;
  /** The deadline of this exchange (AbortSignal.timeout, or a run's signal). */
  signal: AbortSignal;
  /**
   * A POST follows up to this many 307/308 redirects (they keep the method and body); any other
   * redirect of a POST is an error (fetch would turn it into a GET). 0, the default, follows
   * none. A GET follows redirects as fetch does.
   */
  postRedirects?: number | undefined;
}

/** The answer's bytes (possibly none); throws for a non-2xx status or an answer over `max`. */
export async function fetchBounded(url: string, o: BoundedRequest): Promise<Uint8Array> {
  const headers = { Accept: o.accept, ...(o.contentType ? { "Content-Type": o.contentType } : {}) };
  let target = url;
  for (let hop = 0; ; hop++) {
    const res = await fetch(target, {
      method: o.body ? "POST" : "GET",
      headers,
      ...(o.body ? { body: o.body } : {}),
      signal: o.signal,
      redirect: o.body ? "manual" : "follow",
    });
    if (o.body && (o.postRedirects ?? 0) > 0 && (res.status === 307 || res.status === 308)) {
      const location = res.headers.get("location");
      await res.body?.cancel();
      if (!location || hop >= (o.postRedirects ?? 0))
        throw new Error(`HTTP ${res.status}: too many or empty redirects`);
      target = new URL(location, target).toString();
      if (!/^https?:/i.test(target)) throw new Error(`redirect to ${target} is not http(s)`);
      continue;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`HTTP ${res.status} ${res.statusText}`.trim());
    }
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > o.max) {
      await res.body?.cancel();
      throw new Error(`the answer is ${declared} bytes, over the ${o.max}-byte limit`);
    }
    const reader = res.body?.getReader();
    if (!reader) return new Uint8Array(0);
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > o.max) {
        await reader.cancel();
        throw new Error(`the answer is over the ${o.max}-byte limit`);
      }
      chunks.push(value);
    }
    return new Uint8Array(Buffer.concat(chunks, total));
  }
}
