/**
 * Fail-over across servers (timestamp authorities): each URL in order, each tried up to
 * 1 + retries times with exponential backoff and a per-attempt timeout. The first success wins;
 * when every URL fails the error lists each one and why. Errors about the PIN or the login are
 * never retried: a token counts every failed login towards a lock-out.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { CodesignError, type ErrorCode } from "../errors.js";

export interface FailoverOptions {
  /** Extra attempts per URL after the first (default 2). */
  retries?: number;
  /** Per-attempt limit in milliseconds (default 10 000). */
  timeoutMs?: number;
  /** First backoff in milliseconds, doubled each retry (default 1 000). */
  backoffMs?: number;
  /** Called before a retry or a move to the next URL, e.g. to print progress. */
  onFailure?: (event: {
    url: string;
    attempt: number;
    reason: string;
    next: "retry" | "next-url" | "give-up";
  }) => void;
  /** What the URLs are, for messages: "timestamp server". */
  what?: string;
}

export const FAILOVER_DEFAULTS = { retries: 2, timeoutMs: 10_000, backoffMs: 1_000 } as const;

const NEVER_RETRY: readonly ErrorCode[] = [
  "PIN_INCORRECT",
  "PIN_LOCKED",
  "PIN_EXPIRED",
  "PIN_REQUIRED",
  "PIN_FILE_INSECURE",
  "LOGIN_FAILED",
  "USAGE",
];

function reasonOf(e: unknown, timeoutMs: number): string {
  if (e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError")) {
    return `no answer within ${timeoutMs / 1000} s`;
  }
  if (e instanceof Error) {
    const cause = e.cause instanceof Error ? e.cause.message : undefined;
    return cause && !e.message.includes(cause) ? `${e.message} (${cause})` : e.message;
  }
  return String(e);
}

/**
 * Calls `attempt(url, signal)` until one succeeds. `signal` aborts when the attempt's time is up;
 * the attempt must honour it (fetch does; pass it to execa as `cancelSignal`).
 */
export async function tryEach<T>(
  urls: readonly string[],
  attempt: (url: string, signal: AbortSignal) => Promise<T>,
  opts: FailoverOptions = {},
): Promise<{ value: T; url: string }> {
  const retries = opts.retries ?? FAILOVER_DEFAULTS.retries;
  const timeoutMs = opts.timeoutMs ?? FAILOVER_DEFAULTS.timeoutMs;
  const backoffMs = opts.backoffMs ?? FAILOVER_DEFAULTS.backoffMs;
  const what = opts.what ?? "server";
  if (urls.length === 0) throw new CodesignError("USAGE", `no ${what} URL given`);
  const failures: string[] = [];
  for (const [u, url] of urls.entries()) {
    let reason = "";
    for (let i = 0; i <= retries; i++) {
      try {
        return { value: await attempt(url, AbortSignal.timeout(timeoutMs)), url };
      } catch (e) {
        if (e instanceof CodesignError && NEVER_RETRY.includes(e.code)) throw e;
        reason = reasonOf(e, timeoutMs);
        const next = i < retries ? "retry" : u < urls.length - 1 ? "next-url" : "give-up";
        opts.onFailure?.({ url, attempt: i + 1, reason, next });
        if (next === "retry") await sleep(backoffMs * 2 ** i);
      }
    }
    failures.push(`${url}: ${reason} (${retries + 1} attempt${retries === 0 ? "" : "s"})`);
  }
  throw new CodesignError("NETWORK", `every ${what} failed:\n    ${failures.join("\n    ")}`, {
    hint: `check the URLs, add another --timestamp URL, or raise --timestamp-timeout / --timestamp-retries`,
  });
}
