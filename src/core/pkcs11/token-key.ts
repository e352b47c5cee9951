import { CodesignError } from "../errors.js";
import { ckrName } from "./ckr.js";
import { findPrivateKey, type KeyInfo, type MechanismTable } from "./keys.js";
import { chooseModule, type ModuleChoice } from "./module-path.js";
import { requirePin, resolvePin, type PinOptions, type Secret } from "./pin.js";
import { withModule, withSession, type Pkcs11Module, type Session, type TokenEntry } from "./module.js";
import type { Signer } from "../signer.js";
import { LoginFuse } from "./login-fuse.js";
import { SignerPool } from "./signer-pool.js";
import { TokenKeySigner } from "./token-signer.js";
import { parseUri, type Pkcs11Uri } from "./uri.js";

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
   * Sessions to sign on in parallel (default 1); the login is shared by all of them. Fewer are
   * opened when the token allows fewer (see OpenKey.sessions).
   */
  sessions?: number;
  /** The module's init string; else x-init-reserved (module-name) or $CODESIGN_PKCS11_MODULE_ARGS. */
  moduleArgs?: string | undefined;
}

export interface OpenKey extends OpenToken {
  key: KeyInfo & { handle: Buffer };
  /** Safe to call concurrently: requests are spread over `sessions` sessions. */
  signer: Signer;
  /** Sessions actually opened for signing: `opts.sessions`, lowered to what the token allows. */
  sessions: number;
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

/**
 * Everything between a key URI and a ready signer: module, token, session(s), one login, the key.
 * With `sessions: n`, n sessions share that login and the signer spreads requests over them.
 */
export async function withTokenKey<T>(opts: KeyAccessOptions, fn: (k: OpenKey) => Promise<T>): Promise<T> {
  return withToken({ ...opts, login: "required" }, async (t) => {
    const key = findPrivateKey(t.session, t.mechanisms, t.uri);
    const context = key.alwaysAuthenticate && t.pin ? { pin: t.pin, fuse: new LoginFuse() } : undefined;
    const extra: Session[] = [];
    try {
      const budget = sessionBudget(opts.sessions ?? 1, t.token);
      for (let i = 1; i < budget; i++) {
        const s = openExtraSession(t.module, t.token);
        if (!s) break;
        extra.push(s);
      }
      const signers = [t.session, ...extra].map((s) => new TokenKeySigner(s, key, t.mechanisms, context));
      return await fn({ ...t, key, signer: new SignerPool(signers), sessions: signers.length });
    } finally {
      for (const s of extra) s.close();
    }
  });
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
