/**
 * A signer that outlives its token connection. Network modules (p11-kit-client, cloud HSM
 * libraries) and removable tokens fail now and then in ways that say nothing about the request:
 * the service had a hiccup, the server restarted, the session is gone. Such a signature is
 * retried with backoff; when the connection itself is gone, the module is loaded afresh
 * (C_Finalize, then a new load and C_Initialize), the sessions reopened and the PIN the token
 * already accepted in this run given again — one C_Login per reconnect. Everything stops at the
 * deadline, and at once on a PIN error: a PIN the token rejects is never tried twice.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { CodesignError, type ErrorCode } from "../errors.js";
import type { KeyDescription, SignRequest, Signer } from "../signer.js";
import { ckrName } from "./ckr.js";

/** What a failing signature may say when the token or the way to it had trouble, not the request. */
export const TRANSIENT_CKR: ReadonlySet<string> = new Set([
  "CKR_FUNCTION_FAILED",
  "CKR_DEVICE_ERROR",
  "CKR_DEVICE_REMOVED",
  "CKR_TOKEN_NOT_PRESENT",
  "CKR_SESSION_HANDLE_INVALID",
  "CKR_SESSION_CLOSED",
]);

/** The CKR_* name when `e` (or the pkcs11js error it wraps) is a transient failure. */
export function transientCkr(e: unknown): string | undefined {
  const name = ckrName(e) ?? (e instanceof Error ? ckrName(e.cause) : undefined);
  return name !== undefined && TRANSIENT_CKR.has(name) ? name : undefined;
}

/** Errors after which nothing is tried again: each failed login counts towards a lock-out. */
const FATAL: readonly ErrorCode[] = ["PIN_INCORRECT", "PIN_LOCKED", "PIN_EXPIRED", "LOGIN_FAILED"];

/** A connect attempt that failed this way may work a moment later; any other failure is final. */
const RETRY_CONNECT: readonly ErrorCode[] = ["TOKEN_NOT_FOUND", "TOKEN_ERROR"];

/** One connection to the token: a logged-in signer, a liveness probe, and its teardown. */
export interface Connection {
  signer: Signer;
  /** Whether the connection still answers (C_GetSessionInfo on the login's session). */
  alive(): boolean;
  /** Logout, close the sessions (signing threads first), C_Finalize and unload; never throws. */
  close(): void | Promise<void>;
}

export type ReconnectEvent =
  | { kind: "retry"; reason: string }
  | { kind: "reconnecting"; reason: string }
  | { kind: "reconnected"; count: number }
  | { kind: "gave-up"; reason: string };

export interface ReconnectOptions {
  /** How long an outage may last, counted from its first failure; 0 turns retrying off. */
  retryMs: number;
  /** Opens a new connection: module, token, sessions, one login, the same key. */
  connect: () => Promise<Connection>;
  onEvent?: (e: ReconnectEvent) => void;
  /** First wait before a retry, doubled up to `maxBackoffMs` (defaults 250 and 4 000 ms). */
  firstBackoffMs?: number;
  maxBackoffMs?: number;
}

interface Outage {
  since: number;
  backoff: number;
}

const reasonOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export class ReconnectingSigner implements Signer {
  readonly key: KeyDescription;
  /** Reconnects so far (each one a fresh module load and one C_Login). */
  reconnects = 0;
  #conn: Connection;
  #inflight = 0;
  #drainWaiters: Array<() => void> = [];
  #recovering: Promise<void> | undefined;
  #outage: Outage | undefined;
  #dead: unknown;
  #closed = false;
  readonly #o: ReconnectOptions;

  constructor(first: Connection, o: ReconnectOptions) {
    this.key = first.signer.key;
    this.#conn = first;
    this.#o = o;
  }

  async sign(request: SignRequest): Promise<Uint8Array> {
    for (;;) {
      if (this.#dead !== undefined) throw this.#dead;
      if (this.#recovering) {
        await this.#recovering.catch(() => undefined);
        continue;
      }
      const conn = this.#conn;
      let failure: unknown;
      this.#inflight++;
      try {
        const signature = await conn.signer.sign(request);
        this.#outage = undefined;
        return signature;
      } catch (e) {
        failure = e;
      } finally {
        this.#settled();
      }
      if (this.#o.retryMs <= 0 || transientCkr(failure) === undefined) throw failure;
      await this.#recover(conn, failure);
    }
  }

  /** Closes whatever connection is current; waits for a reconnect under way. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#recovering?.catch(() => undefined);
    await this.#drained();
    await this.#conn.close();
  }

  #settled(): void {
    this.#inflight--;
    if (this.#inflight > 0) return;
    for (const w of this.#drainWaiters.splice(0)) w();
  }

  /** Resolves when no signature is in flight: C_Finalize must not run under a C_Sign. */
  #drained(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** One recovery at a time; every caller that met the same failure waits for it. */
  #recover(conn: Connection, failure: unknown): Promise<void> {
    if (this.#recovering) return this.#recovering;
    if (conn !== this.#conn) return Promise.resolve(); // already replaced: just sign again
    const p = this.#recoverOnce(failure).finally(() => {
      this.#recovering = undefined;
    });
    this.#recovering = p;
    return p;
  }

  async #recoverOnce(failure: unknown): Promise<void> {
    const first = this.#o.firstBackoffMs ?? 250;
    const max = this.#o.maxBackoffMs ?? 4_000;
    const outage = (this.#outage ??= { since: performance.now(), backoff: first });
    const deadline = outage.since + this.#o.retryMs;
    let last = failure;
    for (;;) {
      const wait = Math.min(outage.backoff, deadline - performance.now());
      if (wait <= 0 || this.#closed) this.#giveUp(last);
      await sleep(wait);
      outage.backoff = Math.min(outage.backoff * 2, max);
      await this.#drained();
      let alive: boolean;
      try {
        alive = this.#conn.alive();
      } catch {
        alive = false;
      }
      if (alive) {
        // The connection answers: the failure was the service's, and the signature is tried again.
        this.#o.onEvent?.({ kind: "retry", reason: reasonOf(last) });
        return;
      }
      this.#o.onEvent?.({ kind: "reconnecting", reason: reasonOf(last) });
      await this.#conn.close();
      try {
        this.#conn = await this.#o.connect();
      } catch (e) {
        if (!(e instanceof CodesignError) || !RETRY_CONNECT.includes(e.code)) {
          this.#dead = e;
          this.#o.onEvent?.({ kind: "gave-up", reason: reasonOf(e) });
          throw e;
        }
        last = e;
        continue;
      }
      this.reconnects++;
      this.#o.onEvent?.({ kind: "reconnected", count: this.reconnects });
      return;
    }
  }

  #giveUp(last: unknown): never {
    const seconds = Math.round(this.#o.retryMs / 100) / 10;
    const dead =
      last instanceof CodesignError && FATAL.includes(last.code)
        ? last
        : new CodesignError(
            "TOKEN_ERROR",
            `the token did not come back within ${seconds} s: ${reasonOf(last)}`,
            {
              hint: "the files reported as not signed were not written; sign them again once the token answers, or allow a longer outage with --token-retry-seconds",
              cause: last,
            },
          );
    this.#dead = dead;
    this.#o.onEvent?.({ kind: "gave-up", reason: reasonOf(last) });
    throw dead;
  }
}
