/**
 * Run-wide limits for requests to remote servers (timestamp authorities): a concurrency limit, an
 * optional rate limit (a token bucket) and a circuit breaker per URL. One scheduler is shared by
 * every file of a run, so a server that is down costs the run a few failed requests, not a few
 * per file. src/core/util/failover.ts asks it before and after each attempt.
 *
 * The breaker of a URL:
 *  - healthy (it answered its last request): no limit of its own;
 *  - failing (its last request failed): passed over while a later URL is healthy, so a server
 *    that is down costs the run one failed request while the next one works;
 *  - not yet proven (no answer in this run), or failing with no healthy URL after it: one request
 *    at a time, the "probe"; a request that finds the probe busy goes to a later URL when one is
 *    not open, else waits for the probe's outcome;
 *  - open (`breakAfter` failures in a row): skipped for the rest of the run.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { CodesignError } from "../errors.js";

/** Failures in a row after which a URL is skipped for the rest of the run. */
export const BREAK_AFTER = 3;
/** Timestamp requests in flight at once, by default. */
export const DEFAULT_REQUEST_JOBS = 4;

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: Clock = { now: () => performance.now(), sleep: (ms) => sleep(ms).then(() => undefined) };

/** At most `capacity` holders at once; waiters are served in arrival order. */
export class ConcurrencyLimit {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(readonly capacity: number) {}

  async acquire(): Promise<() => void> {
    if (this.active < this.capacity) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve)); // the slot is handed over
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }
}

/**
 * A token bucket of `burst` tokens refilled at `perSecond`: `take()` resolves when the caller's
 * token is there. Reservations are made in call order (the generic cell rate algorithm), so
 * concurrent callers are spaced 1/perSecond apart once the burst is spent.
 */
export class TokenBucket {
  private readonly interval: number;
  /** When the bucket would be full again, given the tokens reserved so far (ms, clock time). */
  private theoretical = Number.NEGATIVE_INFINITY;
  constructor(
    readonly perSecond: number,
    readonly burst = 1,
    private readonly clock: Clock = realClock,
  ) {
    this.interval = 1000 / perSecond;
  }

  /** Reserves a token; resolves when it may be used. */
  async take(): Promise<void> {
    const now = this.clock.now();
    const tat = Math.max(now, this.theoretical);
    const at = Math.max(now, tat - (this.burst - 1) * this.interval);
    this.theoretical = tat + this.interval;
    if (at > now) await this.clock.sleep(at - now);
  }
}

interface Breaker {
  /** Has answered well in this run. */
  proven: boolean;
  streak: number;
  open: boolean;
  lastError: string | undefined;
  /** Resolves when the probe in flight ends; undefined when none is. */
  probe: Promise<void> | undefined;
  endProbe: (() => void) | undefined;
  requests: number;
  failures: number;
}

/** What one attempt may do: go (as the URL's probe or not), or skip the URL. */
export interface Ticket {
  url: string;
  probe: boolean;
}

export interface SchedulerStats {
  /** The limits the run used: requests in flight at once, and started per second (when limited). */
  jobs: number;
  ratePerSecond?: number;
  /** Requests sent (attempts), over every URL. */
  requests: number;
  failures: number;
  /** URLs whose breaker opened, with the last error each gave. */
  skippedUrls: { url: string; failures: number; lastError: string }[];
  /** Per URL: requests and failures. */
  urls: { url: string; requests: number; failures: number }[];
}

export interface SchedulerOptions {
  /** Requests in flight at once (default 4). */
  jobs?: number | undefined;
  /** Requests started per second at most (a token bucket of one); none by default. */
  ratePerSecond?: number | undefined;
  /** Failures in a row that open a URL's breaker (default BREAK_AFTER). */
  breakAfter?: number | undefined;
  /** Told once when a URL's breaker opens. */
  onOpen?: ((event: { url: string; failures: number; reason: string }) => void) | undefined;
  clock?: Clock | undefined;
  /** For messages: "timestamp requests". */
  what?: string | undefined;
}

export class RequestScheduler {
  readonly jobs: number;
  readonly breakAfter: number;
  private readonly limit: ConcurrencyLimit;
  private readonly bucket: TokenBucket | undefined;
  private readonly breakers = new Map<string, Breaker>();
  private readonly onOpen: SchedulerOptions["onOpen"];

  constructor(opts: SchedulerOptions = {}) {
    const what = opts.what ?? "requests";
    this.jobs = opts.jobs ?? DEFAULT_REQUEST_JOBS;
    if (!Number.isInteger(this.jobs) || this.jobs < 1) {
      throw new CodesignError(
        "USAGE",
        `the number of ${what} in flight (${this.jobs}) must be a whole number ≥ 1`,
        {
          hint: `give 1 or more, or leave it out for ${DEFAULT_REQUEST_JOBS}`,
        },
      );
    }
    const rate = opts.ratePerSecond;
    if (rate !== undefined && !(Number.isFinite(rate) && rate > 0)) {
      throw new CodesignError("USAGE", `the rate of ${what} (${rate} per second) must be a number > 0`, {
        hint: "give e.g. 5 (five a second) or 0.5 (one every two seconds), or leave it out for no limit",
      });
    }
    this.breakAfter = opts.breakAfter ?? BREAK_AFTER;
    this.limit = new ConcurrencyLimit(this.jobs);
    this.bucket = rate === undefined ? undefined : new TokenBucket(rate, 1, opts.clock);
    this.onOpen = opts.onOpen;
  }

  private breaker(url: string): Breaker {
    let b = this.breakers.get(url);
    if (!b) {
      b = {
        proven: false,
        streak: 0,
        open: false,
        lastError: undefined,
        probe: undefined,
        endProbe: undefined,
        requests: 0,
        failures: 0,
      };
      this.breakers.set(url, b);
    }
    return b;
  }

  isOpen(url: string): boolean {
    return this.breakers.get(url)?.open ?? false;
  }

  /** Why a URL was skipped, for the message when every URL fails. */
  skipReason(url: string): string {
    const b = this.breaker(url);
    if (b.open)
      return `skipped: failed ${b.failures} times, ${this.breakAfter} in a row, earlier in this run (last: ${b.lastError ?? "?"})`;
    if (b.streak > 0) return `not tried: it failed earlier in this run (last: ${b.lastError ?? "?"})`;
    return "not tried: another request was checking whether it answers";
  }

  /** Answered its last request (and has answered in this run). */
  isHealthy(url: string): boolean {
    const b = this.breakers.get(url);
    return b !== undefined && b.proven && b.streak === 0 && !b.open;
  }

  /**
   * May an attempt go to `url`? Undefined: skip it — it is open; or it failed last time and one
   * of `later` (the URLs after it) is healthy; or its probe is busy and one of `later` is not
   * open. Waits for the probe's outcome when none of `later` can take the request. With
   * `mayPass` false nothing is passed over: only an open URL is skipped.
   */
  async turn(url: string, later: readonly string[], mayPass = true): Promise<Ticket | undefined> {
    for (;;) {
      const b = this.breaker(url);
      if (b.open) return undefined;
      if (b.proven && b.streak === 0) return { url, probe: false };
      if (mayPass && b.streak > 0 && later.some((x) => this.isHealthy(x))) return undefined;
      if (!b.probe) {
        b.probe = new Promise<void>((resolve) => (b.endProbe = resolve));
        return { url, probe: true };
      }
      if (mayPass && later.some((x) => !this.isOpen(x))) return undefined;
      await b.probe;
    }
  }

  /** Runs one attempt within the concurrency and rate limits; `start` is called when it may go. */
  async run<T>(ticket: Ticket, start: () => Promise<T>): Promise<T> {
    const release = await this.limit.acquire();
    try {
      await this.bucket?.take();
      const b = this.breaker(ticket.url);
      b.requests++;
      return await start();
    } finally {
      release();
    }
  }

  /** The attempt's outcome: `ok`, a failure (its reason), or neither (e.g. a usage error). */
  settle(ticket: Ticket, outcome: { ok: true } | { ok: false; reason: string } | { ok: undefined }): void {
    const b = this.breaker(ticket.url);
    if (outcome.ok === true) {
      b.proven = true;
      b.streak = 0;
    } else if (outcome.ok === false) {
      b.failures++;
      b.streak++;
      b.lastError = outcome.reason;
      if (!b.open && b.streak >= this.breakAfter) {
        b.open = true;
        this.onOpen?.({ url: ticket.url, failures: b.streak, reason: outcome.reason });
      }
    }
    if (ticket.probe) {
      const end = b.endProbe;
      b.probe = undefined;
      b.endProbe = undefined;
      end?.();
    }
  }

  stats(): SchedulerStats {
    const all = [...this.breakers.entries()];
    return {
      jobs: this.jobs,
      ...(this.bucket ? { ratePerSecond: this.bucket.perSecond } : {}),
      requests: all.reduce((n, [, b]) => n + b.requests, 0),
      failures: all.reduce((n, [, b]) => n + b.failures, 0),
      skippedUrls: all
        .filter(([, b]) => b.open)
        .map(([url, b]) => ({ url, failures: b.failures, lastError: b.lastError ?? "" })),
      urls: all.map(([url, b]) => ({ url, requests: b.requests, failures: b.failures })),
    };
  }
}

/**
 * The scheduler of a run's timestamp requests, or undefined when the run asks for no timestamp:
 * one per run, shared by every file (and by jarsigner's -tsa attempts).
 */
export function timestampScheduler(
  t:
    | {
        urls: readonly string[];
        jobs?: number | undefined;
        ratePerSecond?: number | undefined;
        onSkip?: SchedulerOptions["onOpen"];
      }
    | undefined,
): RequestScheduler | undefined {
  if (!t || t.urls.length === 0) return undefined;
  return new RequestScheduler({
    jobs: t.jobs,
    ratePerSecond: t.ratePerSecond,
    onOpen: t.onSkip,
    what: "timestamp requests",
  });
}
