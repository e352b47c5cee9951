import { CodesignError } from "../errors.js";
import { findPrivateKey, type KeyInfo, type MechanismTable } from "./keys.js";
import { chooseModule, type ModuleChoice } from "./module-path.js";
import { requirePin, resolvePin, type PinOptions, type Secret } from "./pin.js";
import { withModule, withSession, type Pkcs11Module, type Session, type TokenEntry } from "./module.js";
import type { Signer } from "../signer.js";
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
  /** Sessions to sign on in parallel (default 1); the login is shared by all of them. */
  sessions?: number;
}

export interface OpenKey extends OpenToken {
  key: KeyInfo & { handle: Buffer };
  /** Safe to call concurrently: requests are spread over `sessions` sessions. */
  signer: Signer;
}

export interface OpenToken {
  module: Pkcs11Module;
  moduleChoice: ModuleChoice;
  token: TokenEntry;
  session: Session;
  mechanisms: MechanismTable;
  uri: Pkcs11Uri;
  loggedIn: boolean;
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
  const moduleChoice = chooseModule({ flag: opts.module, uri, ...(opts.env ? { env: opts.env } : {}) });
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
  return withModule(moduleChoice.path, (module) => {
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
    const extra: Session[] = [];
    try {
      for (let i = 1; i < Math.max(1, opts.sessions ?? 1); i++) extra.push(t.module.openSession(t.token));
      const signers = [t.session, ...extra].map((s) => new TokenKeySigner(s, key, t.mechanisms));
      return await fn({ ...t, key, signer: new SignerPool(signers) });
    } finally {
      for (const s of extra) s.close();
    }
  });
}
