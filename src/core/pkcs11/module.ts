/**
 * PKCS#11 access over pkcs11js, layered module → slot/token → session → objects so that each
 * handle's lifetime is obvious: every find is finalised, every session closed, C_Finalize runs
 * when the module is done with (see `withModule`).
 */
import type { PKCS11, Template } from "pkcs11js";
import { ckrName, fromPkcs11Error } from "./ckr.js";
import { CodesignError } from "../errors.js";
import { loadPkcs11Js, type Pkcs11Js } from "./native.js";
import type { InitArgsSource, ModuleChoice } from "./module-path.js";
import type { Secret } from "./pin.js";
import type { Pkcs11Uri } from "./uri.js";

export interface TokenEntry {
  /** The slot handle pkcs11js wants. */
  handle: Buffer;
  slotId: string;
  slotDescription: string;
  slotManufacturer: string;
  label: string;
  manufacturer: string;
  model: string;
  serial: string;
  flags: string[];
  /** ulMaxSessionCount; undefined when the token sets no limit or does not say. */
  maxSessions?: number;
  /** ulSessionCount (sessions open on the token, all applications), when the token says. */
  openSessions?: number;
}

/**
 * CK_EFFECTIVELY_INFINITE (0) and CK_UNAVAILABLE_INFORMATION (~0, which pkcs11js hands over
 * cut to 32 bits) both mean "no limit we can plan with"; so do the huge values some modules
 * give instead (opencryptoki: ~0 - 1).
 */
function sessionCountOf(n: number): number | undefined {
  return n === 0 || n >= 0x80000000 ? undefined : n;
}

export interface ModuleDescription {
  path: string;
  manufacturer: string;
  description: string;
  version: string;
  cryptokiVersion: string;
}

const TOKEN_FLAGS: Array<[string, string]> = [
  ["CKF_RNG", "rng"],
  ["CKF_WRITE_PROTECTED", "write-protected"],
  ["CKF_LOGIN_REQUIRED", "login-required"],
  ["CKF_USER_PIN_INITIALIZED", "user-pin-initialized"],
  ["CKF_PROTECTED_AUTHENTICATION_PATH", "protected-authentication-path"],
  ["CKF_TOKEN_INITIALIZED", "token-initialized"],
  ["CKF_USER_PIN_COUNT_LOW", "user-pin-count-low"],
  ["CKF_USER_PIN_FINAL_TRY", "user-pin-final-try"],
  ["CKF_USER_PIN_LOCKED", "user-pin-locked"],
  ["CKF_USER_PIN_TO_BE_CHANGED", "user-pin-to-be-changed"],
];

const trim = (s: string): string => s.replace(/[\s\0]+$/, "");

function slotIdOf(handle: Buffer): string {
  return handle.length >= 8 ? handle.readBigUInt64LE(0).toString() : handle.readUInt32LE(0).toString();
}

/** Runs `fn` on a call to the module and turns a CKR_* failure into our error. */
function call<T>(during: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromPkcs11Error(e, during);
  }
}

export class Pkcs11Module {
  readonly lib: Pkcs11Js;
  readonly p11: PKCS11;
  readonly path: string;
  private finalized = false;
  /** Whether close() may C_Finalize: false for a worker thread that joined the main thread's module. */
  readonly owner: boolean;

  private constructor(lib: Pkcs11Js, p11: PKCS11, path: string, owner = true) {
    this.lib = lib;
    this.p11 = p11;
    this.path = path;
    this.owner = owner;
  }

  /**
   * The module as a worker thread sees it after the main thread opened it: the same library in
   * the same process. Most modules answer C_Initialize with CKR_CRYPTOKI_ALREADY_INITIALIZED; such
   * a join never finalises (close() leaves C_Finalize to the main thread, after its workers end).
   * Some (p11-kit-client) count initialisations and answer CKR_OK: then close() finalises once,
   * which only gives back this thread's count. Either way the main thread's login should hold for
   * this thread's sessions (login state belongs to the application); see Session.loggedIn.
   */
  static join(modulePath: string): Pkcs11Module {
    const lib = loadPkcs11Js();
    const p11 = new lib.PKCS11();
    try {
      p11.load(modulePath);
    } catch (cause) {
      throw new CodesignError("MODULE_NOT_FOUND", `cannot load PKCS#11 module ${modulePath}`, { cause });
    }
    try {
      p11.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
      return new Pkcs11Module(lib, p11, modulePath, true);
    } catch (e) {
      if (ckrName(e) === "CKR_CRYPTOKI_ALREADY_INITIALIZED")
        return new Pkcs11Module(lib, p11, modulePath, false);
      p11.close();
      throw fromPkcs11Error(e, `C_Initialize of ${modulePath} in a signing thread`);
    }
  }

  static open(modulePath: string, initArgs?: Secret<InitArgsSource>): Pkcs11Module {
    const lib = loadPkcs11Js();
    const p11 = new lib.PKCS11();
    try {
      p11.load(modulePath);
    } catch (cause) {
      throw new CodesignError("MODULE_NOT_FOUND", `cannot load PKCS#11 module ${modulePath}`, {
        hint: "check that the file is a PKCS#11 library for this machine's architecture",
        cause,
      });
    }
    try {
      // pkcs11js copies libraryParameters one byte short (napi buffer size without the NUL),
      // so the terminator is sent along to keep the string's last character.
      p11.C_Initialize(
        initArgs
          ? { flags: lib.CKF_OS_LOCKING_OK, libraryParameters: `${initArgs.reveal()}\0` }
          : { flags: lib.CKF_OS_LOCKING_OK },
      );
    } catch (e) {
      p11.close();
      throw initializeError(e, modulePath, initArgs);
    }
    return new Pkcs11Module(lib, p11, modulePath);
  }

  close(): void {
    if (this.finalized) return;
    this.finalized = true;
    try {
      if (this.owner) this.p11.C_Finalize();
    } finally {
      this.p11.close();
    }
  }

  describe(): ModuleDescription {
    const info = call("C_GetInfo", () => this.p11.C_GetInfo());
    return {
      path: this.path,
      manufacturer: trim(info.manufacturerID),
      description: trim(info.libraryDescription),
      version: `${info.libraryVersion.major}.${info.libraryVersion.minor}`,
      cryptokiVersion: `${info.cryptokiVersion.major}.${info.cryptokiVersion.minor}`,
    };
  }

  tokens(): TokenEntry[] {
    const slots = call("C_GetSlotList", () => this.p11.C_GetSlotList(true));
    const out: TokenEntry[] = [];
    for (const handle of slots) {
      const slot = call("C_GetSlotInfo", () => this.p11.C_GetSlotInfo(handle));
      let token;
      try {
        token = this.p11.C_GetTokenInfo(handle);
      } catch {
        continue; // a slot whose token vanished between the two calls
      }
      out.push({
        handle,
        slotId: slotIdOf(handle),
        slotDescription: trim(slot.slotDescription),
        slotManufacturer: trim(slot.manufacturerID),
        label: trim(token.label),
        manufacturer: trim(token.manufacturerID),
        model: trim(token.model),
        serial: trim(token.serialNumber),
        ...optional("maxSessions", sessionCountOf(token.maxSessionCount)),
        ...optional("openSessions", sessionCountOf(token.sessionCount)),
        flags: TOKEN_FLAGS.filter(
          ([name]) => (token.flags & (this.lib[name as keyof Pkcs11Js] as number)) !== 0,
        ).map(([, word]) => word),
      });
    }
    return out;
  }

  /** Initialised tokens matching the URI's token, slot and library attributes. */
  matchingTokens(uri: Pkcs11Uri | undefined): TokenEntry[] {
    // A slot with a blank token (SoftHSM always offers one) cannot open sessions.
    const tokens = this.tokens().filter((t) => t.flags.includes("token-initialized"));
    if (!uri) return tokens;
    const p = uri.path;
    if (
      p["library-manufacturer"] !== undefined ||
      p["library-description"] !== undefined ||
      p["library-version"] !== undefined
    ) {
      const m = this.describe();
      if (p["library-manufacturer"] !== undefined && p["library-manufacturer"] !== m.manufacturer) return [];
      if (p["library-description"] !== undefined && p["library-description"] !== m.description) return [];
      if (p["library-version"] !== undefined && !versionMatches(p["library-version"], m.version)) return [];
    }
    return tokens.filter(
      (t) =>
        (p.token === undefined || p.token === t.label) &&
        (p.manufacturer === undefined || p.manufacturer === t.manufacturer) &&
        (p.model === undefined || p.model === t.model) &&
        (p.serial === undefined || p.serial === t.serial) &&
        (p["slot-id"] === undefined || String(p["slot-id"]) === t.slotId) &&
        (p["slot-description"] === undefined || p["slot-description"] === t.slotDescription) &&
        (p["slot-manufacturer"] === undefined || p["slot-manufacturer"] === t.slotManufacturer),
    );
  }

  /** Exactly one token for the URI, or an error that lists what is there. */
  selectToken(uri: Pkcs11Uri | undefined): TokenEntry {
    const found = this.matchingTokens(uri);
    if (found.length === 1 && found[0]) return found[0];
    const all = this.tokens();
    const listing =
      all.map((t) => `"${t.label}" (serial ${t.serial}, slot ${t.slotId})`).join(", ") || "none";
    if (found.length === 0) {
      throw new CodesignError("TOKEN_NOT_FOUND", `no token matches the key URI (module ${this.path})`, {
        hint: `tokens present: ${listing}; run \`codesign tokens\` and use its URI`,
      });
    }
    throw new CodesignError("AMBIGUOUS", `${found.length} tokens match the key URI`, {
      hint: `add token= or serial= to the URI; tokens present: ${listing}`,
    });
  }

  openSession(token: TokenEntry, opts: { readWrite?: boolean } = {}): Session {
    const flags = this.lib.CKF_SERIAL_SESSION | (opts.readWrite ? this.lib.CKF_RW_SESSION : 0);
    const handle = call("C_OpenSession", () => this.p11.C_OpenSession(token.handle, flags));
    return new Session(this, token, handle);
  }

  /**
   * Names of the mechanisms the token offers, with their flags. `describe` limits the
   * C_GetMechanismInfo calls (one round trip each on a network token) to the names it accepts;
   * the others are listed unflagged.
   */
  mechanisms(
    token: TokenEntry,
    describe: (name: string) => boolean = () => true,
  ): Map<number, { name: string; sign: boolean; minKey: number; maxKey: number }> {
    const list = call("C_GetMechanismList", () => this.p11.C_GetMechanismList(token.handle));
    const names = mechanismNames(this.lib);
    const out = new Map<number, { name: string; sign: boolean; minKey: number; maxKey: number }>();
    for (const type of list) {
      let sign = false;
      let minKey = 0;
      let maxKey = 0;
      const name = names.get(type) ?? `0x${type.toString(16)}`;
      if (!describe(name)) {
        out.set(type, { name, sign, minKey, maxKey });
        continue;
      }
      try {
        const info = this.p11.C_GetMechanismInfo(token.handle, type);
        sign = (info.flags & this.lib.CKF_SIGN) !== 0;
        minKey = info.minKeySize;
        maxKey = info.maxKeySize;
      } catch {
        // some modules list mechanisms they cannot describe; keep them unflagged
      }
      out.set(type, { name, sign, minKey, maxKey });
    }
    return out;
  }
}

function optional<K extends string>(key: K, value: number | undefined): { [P in K]?: number } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: number };
}

/**
 * The init string itself is never part of the error: it can hold a password. CKR_ARGUMENTS_BAD
 * without one is what NSS softokn and similar modules say when they needed one.
 */
function initializeError(
  e: unknown,
  modulePath: string,
  initArgs: Secret<InitArgsSource> | undefined,
): CodesignError {
  const base = fromPkcs11Error(e, `C_Initialize of ${modulePath}`);
  if (initArgs) {
    return new CodesignError(base.code, `${base.message} with the init string from ${initArgs.source}`, {
      hint: `check the init string (${initArgs.source}; not shown, as it can hold a password)`,
      cause: e,
    });
  }
  if (ckrName(e) !== "CKR_ARGUMENTS_BAD") return base;
  return new CodesignError(
    "TOKEN_ERROR",
    `C_Initialize of ${modulePath} failed: the module rejected its initialisation arguments (CKR_ARGUMENTS_BAD)`,
    {
      hint:
        "this module may need an init string: give it with --module-args or CODESIGN_PKCS11_MODULE_ARGS " +
        "(NSS softokn: configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=)",
      cause: e,
    },
  );
}

function versionMatches(wanted: string, actual: string): boolean {
  const [wMajor, wMinor] = wanted.split(".");
  const [aMajor, aMinor] = actual.split(".");
  return Number(wMajor) === Number(aMajor) && (wMinor === undefined || Number(wMinor) === Number(aMinor));
}

let mechanismNameCache: Map<number, string> | undefined;
function mechanismNames(lib: Pkcs11Js): Map<number, string> {
  if (mechanismNameCache) return mechanismNameCache;
  mechanismNameCache = new Map();
  for (const [name, value] of Object.entries(lib)) {
    if (name.startsWith("CKM_") && typeof value === "number" && !mechanismNameCache.has(value)) {
      mechanismNameCache.set(value, name);
    }
  }
  // pkcs11js 2.1 predates the PKCS#11 3.0 EdDSA constants.
  mechanismNameCache.set(CKM_EDDSA, "CKM_EDDSA");
  mechanismNameCache.set(CKM_EC_EDWARDS_KEY_PAIR_GEN, "CKM_EC_EDWARDS_KEY_PAIR_GEN");
  return mechanismNameCache;
}

/** PKCS#11 3.0 values missing from pkcs11js's constant table. */
export const CKK_EC_EDWARDS = 0x40;
export const CKM_EDDSA = 0x1057;
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
/** Session states (PKCS#11 5.6), not in pkcs11js's table. */
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

export class Session {
  readonly module: Pkcs11Module;
  readonly token: TokenEntry;
  readonly handle: Buffer;
  private closed = false;

  constructor(module: Pkcs11Module, token: TokenEntry, handle: Buffer) {
    this.module = module;
    this.token = token;
    this.handle = handle;
  }

  get p11(): PKCS11 {
    return this.module.p11;
  }

  /**
   * One C_Login, never retried: a wrong PIN tried again is how tokens get locked.
   * Already logged in (another session of this process) counts as success.
   */
  login(pin: Secret, userType: "user" | "so" = "user"): void {
    const lib = this.module.lib;
    try {
      this.p11.C_Login(this.handle, userType === "user" ? lib.CKU_USER : lib.CKU_SO, pin.reveal());
    } catch (e) {
      if (e instanceof Error && e.message === "CKR_USER_ALREADY_LOGGED_IN") return;
      throw fromPkcs11Error(e, `login to token "${this.token.label}"`);
    }
  }

  /**
   * C_Login(CKU_CONTEXT_SPECIFIC) for a key with CKA_ALWAYS_AUTHENTICATE: between C_SignInit and
   * C_Sign, it authorises that one operation only.
   */
  contextLogin(pin: Secret): void {
    try {
      this.p11.C_Login(this.handle, this.module.lib.CKU_CONTEXT_SPECIFIC, pin.reveal());
    } catch (e) {
      throw fromPkcs11Error(e, `per-signature login to key on token "${this.token.label}"`);
    }
  }

  /** Whether the session is in a user state (logged in): C_GetSessionInfo. */
  loggedIn(): boolean {
    const { state } = call("C_GetSessionInfo", () => this.p11.C_GetSessionInfo(this.handle));
    return state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
  }

  /** Whether the session still answers (C_GetSessionInfo): false once the token or its server is gone. */
  alive(): boolean {
    if (this.closed) return false;
    try {
      this.p11.C_GetSessionInfo(this.handle);
      return true;
    } catch {
      return false;
    }
  }

  logout(): void {
    try {
      this.p11.C_Logout(this.handle);
    } catch {
      // not logged in: nothing to undo
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.p11.C_CloseSession(this.handle);
    } catch {
      // the token went away; the module's C_Finalize cleans up
    }
  }

  find(template: Template, max = 1000): Buffer[] {
    call("C_FindObjectsInit", () => this.p11.C_FindObjectsInit(this.handle, template));
    try {
      return call("C_FindObjects", () => this.p11.C_FindObjects(this.handle, max));
    } finally {
      this.p11.C_FindObjectsFinal(this.handle);
    }
  }

  /**
   * Reads attributes; an attribute the object does not have (or hides) comes back undefined. All
   * are asked for in one call first (on a network token each call is a round trip or two); when
   * the token refuses one of them, each is asked for alone.
   */
  attributes(object: Buffer, types: number[]): Map<number, Buffer | undefined> {
    const out = new Map<number, Buffer | undefined>();
    if (types.length > 1) {
      try {
        const got = this.p11.C_GetAttributeValue(
          this.handle,
          object,
          types.map((type) => ({ type })),
        );
        if (got.length === types.length && got.every((a) => a.value !== undefined)) {
          for (const a of got) out.set(a.type, a.value);
          return out;
        }
      } catch {
        // one of them is missing or sensitive: ask for each alone
      }
    }
    for (const type of types) {
      try {
        const [attr] = this.p11.C_GetAttributeValue(this.handle, object, [{ type }]);
        out.set(type, attr?.value);
      } catch {
        out.set(type, undefined);
      }
    }
    return out;
  }

  /** `authorize` runs between C_SignInit and C_Sign: the context login of always-authenticate keys. */
  async signOnce(
    mechanism: Parameters<PKCS11["C_SignInit"]>[1],
    key: Buffer,
    data: Buffer,
    authorize?: (s: Session) => void,
  ): Promise<Buffer> {
    call("C_SignInit", () => this.p11.C_SignInit(this.handle, mechanism, key));
    try {
      authorize?.(this);
    } catch (e) {
      // A failed C_Sign ends the operation (PKCS#11 5.2), so the session is usable again;
      // without the login this one cannot succeed, and its result is not wanted anyway.
      try {
        this.p11.C_Sign(this.handle, data, Buffer.alloc(1024));
      } catch {
        // expected: CKR_USER_NOT_LOGGED_IN
      }
      throw e;
    }
    try {
      return await this.p11.C_SignAsync(this.handle, data, Buffer.alloc(1024));
    } catch (e) {
      throw fromPkcs11Error(e, "C_Sign");
    }
  }
}

/** Opens the module (with the choice's init string), runs `fn`, and always finalises (C_Finalize) afterwards. */
export async function withModule<T>(
  module: string | ModuleChoice,
  fn: (m: Pkcs11Module) => Promise<T> | T,
): Promise<T> {
  const m =
    typeof module === "string" ? Pkcs11Module.open(module) : Pkcs11Module.open(module.path, module.initArgs);
  try {
    return await fn(m);
  } finally {
    m.close();
  }
}

/** Opens a session on the token, runs `fn`, and always closes it. */
export async function withSession<T>(
  m: Pkcs11Module,
  token: TokenEntry,
  fn: (s: Session) => Promise<T> | T,
  opts: { readWrite?: boolean } = {},
): Promise<T> {
  const s = m.openSession(token, opts);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}
