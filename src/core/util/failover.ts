/**
 * Fail-over across servers (timestamp authorities): each URL in order, each tried up to
 * 1 + retries times with exponential backoff and a per-attempt timeout. With a run-wide
 * scheduler (./scheduler.ts) attempts share its limits and a URL whose breaker is open is skipped. The first success wins;
 * when every URL fails the error lists each one and why. Errors about the PIN or the login are
 * never retried: a token counts every failed login towards a lock-out.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { CodesignError, type ErrorCode } from "../errors.js";
import type { RequestScheduler } from "./scheduler.js";

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
  /**
   * Run-wide limits shared by every call of a run (src/core/util/scheduler.ts): attempts wait for
   * its concurrency and rate limits, and a URL whose breaker is open is skipped at once.
   */
  scheduler?: RequestScheduler | undefined;
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
  const sched = opts.scheduler;
  const failures = new Map<string, string>();

  /**
   * Up to 1 + retries attempts on one URL. `mayPass`: with a scheduler, a URL may be passed over
   * for a later one (it failed and a later one answers, or its probe is busy), instead of waited for.
   */
  const tryUrl = async (
    u: number,
    url: string,
    mayPass: boolean,
  ): Promise<{ value: T } | "passed" | "failed"> => {
    let reason = "";
    let tried = 0;
    let passed = false;
    for (let i = 0; i <= retries; i++) {
      const ticket = sched ? await sched.turn(url, urls.slice(u + 1), mayPass) : undefined;
      if (sched && !ticket) {
        passed = !sched.isOpen(url);
        if (tried === 0) reason = sched.skipReason(url);
        break;
      }
      const settle = (outcome: Parameters<RequestScheduler["settle"]>[1]) => {
        if (sched && ticket) sched.settle(ticket, outcome);
      };
      const start = () => attempt(url, AbortSignal.timeout(timeoutMs));
      tried++;
      try {
        const value = sched && ticket ? await sched.run(ticket, start) : await start();
        settle({ ok: true });
        return { value };
      } catch (e) {
        if (e instanceof CodesignError && NEVER_RETRY.includes(e.code)) {
          settle({ ok: undefined });
          throw e;
        }
        reason = reasonOf(e, timeoutMs);
        settle({ ok: false, reason });
        // An open breaker ends this URL's retries too: the next URL is used at once.
        const open = sched?.isOpen(url) ?? false;
        const next = i < retries && !open ? "retry" : u < urls.length - 1 ? "next-url" : "give-up";
        opts.onFailure?.({ url, attempt: i + 1, reason, next });
        if (next !== "retry") break;
        await sleep(backoffMs * 2 ** i);
      }
    }
    failures.set(
      url,
      tried === 0 ? `${url}: ${reason}` : `${url}: ${reason} (${tried} attempt${tried === 1 ? "" : "s"})`,
    );
    return passed && tried === 0 ? "passed" : "failed";
  };

  const passedOver: [number, string][] = [];
  for (const [u, url] of urls.entries()) {
    const r = await tryUrl(u, url, true);
    if (typeof r === "object") return { value: r.value, url };
    if (r === "passed") passedOver.push([u, url]);
  }
  // Every later URL failed: the URLs passed over get this request after all.
  for (const [u, url] of passedOver) {
    const r = await tryUrl(u, url, false);
    if (typeof r === "object") return { value: r.value, url };
  }
  const list = urls.flatMap((url) => failures.get(url) ?? []);
  throw new CodesignError("NETWORK", `every ${what} failed:\n    ${[...new Set(list)].join("\n    ")}`, {
    hint: `check the URLs, add another --timestamp URL, or raise --timestamp-timeout / --timestamp-retries`,
  });
}
