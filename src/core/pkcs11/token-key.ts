import os from "node:os";
import { CodesignError } from "../errors.js";
import { ckrName } from "./ckr.js";
import { findPrivateKey, type KeyInfo, type MechanismTable } from "./keys.js";
import { chooseModule, type ModuleChoice } from "./module-path.js";
import { requirePin, resolvePin, type PinOptions, type Secret } from "./pin.js";
import { Pkcs11Module, withModule, withSession, type Session, type TokenEntry } from "./module.js";
import type { Signer } from "../signer.js";
import { LoginFuse } from "./login-fuse.js";
import { ReconnectingSigner, type Connection } from "./reconnect.js";
import { JobsGovernor } from "./jobs-governor.js";
import { SignerPool } from "./signer-pool.js";
import { TokenKeySigner } from "./token-signer.js";
import { parseUri, type Pkcs11Uri } from "./uri.js";
import { SigningThreads, signWorkerFile } from "./worker-signer.js";

export interface KeyAccessOptions {
  /** RFC 7512 URI of the private key. */
  key: string;
  module?: string | undefined;
  pinFile?: string | undefined;
  prompt?: PinOptions["prompt"];
  /** A PIN already resolved (e.g. to hand on to a tool afterwards): used as is, no other source read. */
  pin?: Secret | undefined;
  env?: NodeJS.ProcessEnv;
  readWrite?: boolean;
  /**
   * Signatures in flight at once (default 1), each on its own session; the login is shared by
   * all of them. Fewer are opened when the token allows fewer (see OpenKey.sessions). "auto":
   * chosen from the token's session limit and its measured round trip, then adjusted while
   * signing (see planJobs and JobsGovernor).
   */
  sessions?: number | "auto";
  /** false: never sign in threads, whatever the round trip (default true). */
  threads?: boolean;
  /** The module's init string; else x-init-reserved (module-name) or $CODESIGN_PKCS11_MODULE_ARGS. */
  moduleArgs?: string | undefined;
  /**
   * How long signing waits for a token that failed transiently or went away (default 30 s,
   * else $CODESIGN_TOKEN_RETRY_SECONDS): retries with backoff, reconnects with the PIN already
   * accepted in this run, never after a PIN error. 0: the first token error fails the signature.
   */
  tokenRetrySeconds?: number | undefined;
}

export interface OpenKey extends OpenToken {
  key: KeyInfo & { handle: Buffer };
  /** Safe to call concurrently: requests are spread over `sessions` sessions. */
  signer: Signer;
  /**
   * Signatures that can be in flight at once: `opts.sessions`, lowered to what the token allows
   * (under "auto", the most the governor may grow to).
   */
  sessions: number;
  jobs: JobsInfo;
}

/** How signing runs, for the report. */
export interface JobsInfo {
  requested: number | "auto";
  /** in-process: sessions on the main thread; threads: one session per signing thread. */
  mode: "in-process" | "threads";
  /** The login session's C_GetSessionInfo round trip on the first connection, in ms. */
  roundTripMs: number;
  /** Signatures in flight when the run ended: what the governor settled on, or what was opened. */
  readonly settled: number;
}

export interface OpenToken {
  module: Pkcs11Module;
  moduleChoice: ModuleChoice;
  token: TokenEntry;
  session: Session;
  mechanisms: MechanismTable;
  uri: Pkcs11Uri;
  loggedIn: boolean;
  /** The PIN of the login, kept for the run (always-authenticate keys need it per signature). */
  pin?: Secret;
}

/**
 * Module, token and session for a URI, with one login when `login` is "required" (or
 * "if-pin" and a PIN source exists). All of it is closed when `fn` returns or throws.
 */
export async function withToken<T>(
  opts: KeyAccessOptions & { login: "required" | "if-pin" },
  fn: (t: OpenToken) => Promise<T>,
): Promise<T> {
  const uri = parseUri(opts.key);
  const moduleChoice = chooseModule({
    flag: opts.module,
    uri,
    moduleArgs: opts.moduleArgs,
    ...(opts.env ? { env: opts.env } : {}),
  });
  // Resolve the PIN before touching the token, so a missing PIN costs no module load.
  const pinOptions = {
    uri,
    pinFile: opts.pinFile,
    prompt: opts.prompt,
    ...(opts.env ? { env: opts.env } : {}),
  };
  const pin =
    opts.pin ??
    (opts.login === "required" ? await requirePin(pinOptions, "this command") : await resolvePin(pinOptions));
  return withModule(moduleChoice, (module) => {
    const token = module.selectToken(uri);
    if (pin && token.flags.includes("user-pin-locked")) {
      throw new CodesignError("PIN_LOCKED", `the user PIN of token "${token.label}" is locked`, {
        hint: "the security officer must unlock or reset it; codesign will not try to log in",
      });
    }
    const mechanisms = module.mechanisms(token);
    return withSession(
      module,
      token,
      async (session) => {
        if (pin) session.login(pin);
        try {
          return await fn({
            module,
            moduleChoice,
            token,
            session,
            mechanisms,
            uri,
            loggedIn: pin !== undefined,
            ...(pin ? { pin } : {}),
          });
        } finally {
          if (pin) session.logout();
        }
      },
      { readWrite: opts.readWrite ?? false },
    );
  });
}

/** How long a batch waits for a token that went away, unless told otherwise. */
export const DEFAULT_TOKEN_RETRY_SECONDS = 30;

/**
 * Everything between a key URI and a ready signer: module, token, session(s), one login, the key.
 * With `sessions: n`, n sessions share that login and the signer spreads requests over them.
 * The signer retries transient failures and reconnects within `tokenRetrySeconds` (see
 * reconnect.ts); the other fields describe the first connection.
 */
export async function withTokenKey<T>(opts: KeyAccessOptions, fn: (k: OpenKey) => Promise<T>): Promise<T> {
  const uri = parseUri(opts.key);
  const moduleChoice = chooseModule({
    flag: opts.module,
    uri,
    moduleArgs: opts.moduleArgs,
    ...(opts.env ? { env: opts.env } : {}),
  });
  const retryMs = tokenRetrySeconds(opts) * 1000;
  // Resolve the PIN before touching the token, so a missing PIN costs no module load.
  const pin =
    opts.pin ??
    (await requirePin(
      { uri, pinFile: opts.pinFile, prompt: opts.prompt, ...(opts.env ? { env: opts.env } : {}) },
      "this command",
    ));
  const fuse = new LoginFuse();
  const target: KeyTarget = {
    moduleChoice,
    uri,
    pin,
    fuse,
    requested: opts.sessions ?? 1,
    threads: opts.threads ?? true,
    readWrite: opts.readWrite,
  };
  const first = await connectKey(target);
  const signer = new ReconnectingSigner(first, {
    retryMs,
    connect: () => connectKey({ ...target, same: first.open }),
  });
  const plan = target.plan as JobsPlan;
  const governor = target.governor;
  const jobs: JobsInfo = {
    requested: target.requested,
    mode: plan.mode,
    roundTripMs: Math.round(plan.roundTripMs * 10) / 10,
    get settled() {
      return governor ? governor.settled : first.open.sessions;
    },
  };
  try {
    return await fn({ ...first.open, signer, jobs });
  } finally {
    await signer.close();
  }
}

/** `tokenRetrySeconds`, else $CODESIGN_TOKEN_RETRY_SECONDS, else 30; 0 turns retrying off. */
export function tokenRetrySeconds(opts: Pick<KeyAccessOptions, "tokenRetrySeconds" | "env">): number {
  const fromEnv = (opts.env ?? process.env)["CODESIGN_TOKEN_RETRY_SECONDS"];
  const value =
    opts.tokenRetrySeconds ?? (fromEnv === undefined || fromEnv === "" ? undefined : Number(fromEnv));
  if (value === undefined) return DEFAULT_TOKEN_RETRY_SECONDS;
  if (!Number.isFinite(value) || value < 0) {
    throw new CodesignError("USAGE", `the token retry time (${String(value)} s) must be a number ≥ 0`, {
      hint: "give seconds, e.g. 30; 0 fails at the first token error",
    });
  }
  return value;
}

interface KeyTarget {
  moduleChoice: ModuleChoice;
  uri: Pkcs11Uri;
  pin: Secret;
  fuse: LoginFuse;
  requested: number | "auto";
  threads: boolean;
  readWrite: boolean | undefined;
  /** On a reconnect: the first connection, whose token and key must be the ones found again. */
  same?: Omit<OpenKey, "signer" | "jobs">;
  /** Decided on the first connection and kept for every reconnect. */
  plan?: JobsPlan;
  /** Under "auto": one for the run, shared by every connection. */
  governor?: JobsGovernor;
}

type KeyConnection = Connection & { open: Omit<OpenKey, "signer" | "jobs"> };

/** The mechanisms a signer may use (token-signer.ts): only these are described, a round trip each. */
const SIGNING_MECHANISM = /^CKM_((SHA\d*_)?RSA_PKCS(_PSS)?|ECDSA(_SHA\d+)?|EDDSA)$/;

/** A round trip this long (ms) or longer makes signing threads worth their start-up. */
export const THREADS_FROM_MS = 2;
/** The most signatures in flight "auto" grows to on a slow token. */
export const AUTO_MAX_IN_FLIGHT = 32;

export interface JobsPlan {
  mode: "in-process" | "threads";
  /** Sessions (in-process) or threads of one session each that can sign at once. */
  capacity: number;
  /** Under "auto": where the governor starts. */
  start: number;
  roundTripMs: number;
}

/**
 * Where and how wide to sign. A token that answers in under THREADS_FROM_MS is CPU-bound (a
 * local token): sessions on the main thread, "auto" meaning min(4, cores). A slower one (a
 * network token) spends each synchronous C_SignInit waiting, so every signature in flight gets a
 * thread of its own; "auto" then starts at one in flight per 2.5 ms of round trip (2 to 8) and
 * may grow to AUTO_MAX_IN_FLIGHT. The token's free sessions bound both (the login's own session
 * counts). Always-authenticate keys stay in-process: their per-signature login is the main
 * thread's fuse.
 */
export function planJobs(
  requested: number | "auto",
  roundTripMs: number,
  token: Pick<TokenEntry, "maxSessions" | "openSessions">,
  can: { threads: boolean; cores?: number },
): JobsPlan {
  const auto = requested === "auto";
  const slow = roundTripMs >= THREADS_FROM_MS;
  if (slow && can.threads && (auto || requested > 1)) {
    const capacity = Math.max(1, sessionBudget((auto ? AUTO_MAX_IN_FLIGHT : requested) + 1, token) - 1);
    const guess = Math.min(8, Math.max(2, Math.ceil(roundTripMs / 2.5)));
    return { mode: "threads", capacity, start: auto ? Math.min(capacity, guess) : capacity, roundTripMs };
  }
  const capacity = sessionBudget(
    auto ? Math.min(4, can.cores ?? os.availableParallelism()) : requested,
    token,
  );
  return { mode: "in-process", capacity, start: capacity, roundTripMs };
}

/**
 * The round trip to the token, in ms: the fastest of the login session's C_OpenSession (timed by
 * the caller) and two C_GetSessionInfo calls, so that one slow moment on a busy machine does not
 * make a local token look remote.
 */
function roundTrip(session: Session, openMs: number): number {
  let best = openMs;
  for (let i = 0; i < 2; i++) {
    const t = performance.now();
    session.alive();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

/** One connection: module loaded and initialised, the token, its sessions, one login, the key. */
async function connectKey(t: KeyTarget): Promise<KeyConnection> {
  const module = Pkcs11Module.open(t.moduleChoice.path, t.moduleChoice.initArgs);
  const sessions: Session[] = [];
  let threads: SigningThreads | undefined;
  let loggedIn = false;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    // Threads close their sessions and end before the module is finalised under them.
    await threads?.close();
    const [login, ...extra] = sessions;
    for (const s of extra) s.close();
    if (login) {
      if (loggedIn) login.logout();
      login.close();
    }
    try {
      module.close();
    } catch {
      // C_Finalize of a module whose token or server went away: nothing left to release
    }
  };
  try {
    const token = module.selectToken(t.uri);
    if (t.same && token.serial !== t.same.token.serial) {
      throw new CodesignError(
        "TOKEN_NOT_FOUND",
        `the key URI now finds token serial ${token.serial}, not ${t.same.token.serial} that the run started with`,
      );
    }
    if (token.flags.includes("user-pin-locked")) {
      throw new CodesignError("PIN_LOCKED", `the user PIN of token "${token.label}" is locked`, {
        hint: "the security officer must unlock or reset it; codesign will not try to log in",
      });
    }
    const mechanisms = module.mechanisms(token, (name) => SIGNING_MECHANISM.test(name));
    const opening = performance.now();
    const session = module.openSession(token, { readWrite: t.readWrite ?? false });
    const openMs = performance.now() - opening;
    sessions.push(session);
    const file = t.threads ? signWorkerFile() : undefined;
    const roundTripMs = t.plan?.roundTripMs ?? roundTrip(session, openMs);
    const early = t.plan ?? planJobs(t.requested, roundTripMs, token, { threads: file !== undefined });
    if (early.mode === "threads" && file) {
      // The threads load, join the module and open their sessions while this one logs in.
      threads = new SigningThreads(file, { modulePath: module.path, token }, early.capacity, t.pin);
      threads.boot(early.start);
    }
    session.login(t.pin);
    loggedIn = true;
    // Threads that need a login of their own log in while this one looks for the key.
    threads?.loggedIn();
    const key = findPrivateKey(session, mechanisms, t.uri);
    if (t.same && !sameBytes(key.spki, t.same.key.spki)) {
      throw new CodesignError("KEY_NOT_FOUND", "after reconnecting, the key URI finds a different key", {
        hint: "the token changed while the run was signing; nothing more is signed with it",
      });
    }
    const context = key.alwaysAuthenticate ? { pin: t.pin, fuse: t.fuse } : undefined;
    // A per-signature login stays on this thread, with the run's LoginFuse.
    t.plan ??= key.alwaysAuthenticate ? planJobs(t.requested, roundTripMs, token, { threads: false }) : early;
    let signer: Signer | undefined;
    let capacity = t.plan.capacity;
    if (threads && t.plan.mode === "threads") {
      try {
        await threads.start({ id: key.id, label: key.label, handle: key.handle });
        signer = new TokenKeySigner(threads, key, mechanisms);
      } catch {
        // This module gives a thread no session of its own: sign on the main thread.
        const width = t.requested === "auto" ? Math.min(t.plan.capacity, 4) : t.plan.capacity;
        t.plan = { ...t.plan, mode: "in-process", capacity: width, start: width };
        capacity = t.plan.capacity;
      }
    }
    if (!signer && threads) {
      await threads.close();
      threads = undefined;
    }
    if (!signer) {
      const budget = sessionBudget(capacity, token);
      for (let i = 1; i < budget; i++) {
        const s = openExtraSession(module, token);
        if (!s) break;
        sessions.push(s);
      }
      capacity = sessions.length;
      signer = new SignerPool(sessions.map((s) => new TokenKeySigner(s, key, mechanisms, context)));
    }
    if (t.requested === "auto") {
      t.governor ??= new JobsGovernor(Math.min(t.plan.start, capacity), capacity);
      signer = t.governor.wrap(signer);
    }
    return {
      signer,
      alive: () => session.alive(),
      close,
      open: {
        module,
        moduleChoice: t.moduleChoice,
        token,
        session,
        mechanisms,
        uri: t.uri,
        loggedIn: true,
        pin: t.pin,
        key,
        sessions: capacity,
      },
    };
  } catch (e) {
    await close();
    throw e;
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && Buffer.from(a).equals(Buffer.from(b));
}

/**
 * How many sessions to sign on, the login's own included: what was asked, at least one, and no
 * more than the token's ulMaxSessionCount leaves free (ulSessionCount, read before the login's
 * session was opened, counts other applications' sessions too).
 */
export function sessionBudget(
  wanted: number,
  token: Pick<TokenEntry, "maxSessions" | "openSessions">,
): number {
  const asked = Math.max(1, Math.floor(wanted));
  if (token.maxSessions === undefined) return asked;
  const free = token.maxSessions - (token.openSessions ?? 0);
  return Math.max(1, Math.min(asked, free));
}

/** One more session, or undefined when the token has no more (CKR_SESSION_COUNT): the pool just stays smaller. */
function openExtraSession(module: Pkcs11Module, token: TokenEntry): Session | undefined {
  try {
    return module.openSession(token);
  } catch (e) {
    if (e instanceof CodesignError && ckrName(e.cause) === "CKR_SESSION_COUNT") return undefined;
    throw e;
  }
}
