import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);

// src/core/pkcs11/sign-worker.ts
import { parentPort, workerData } from "node:worker_threads";

// src/core/errors.ts
var CodesignError = class extends Error {
  code;
  hint;
  constructor(code, message, details = {}) {
    super(message, details.cause === void 0 ? void 0 : { cause: details.cause });
    this.name = "CodesignError";
    this.code = code;
    this.hint = details.hint;
  }
};

// src/core/pkcs11/ckr.ts
var MEANINGS = {
  CKR_PIN_INCORRECT: {
    code: "PIN_INCORRECT",
    words: "the PIN was rejected by the token",
    hint: "check the PIN source; codesign does not retry, because repeated failures lock the token"
  },
  CKR_PIN_LOCKED: {
    code: "PIN_LOCKED",
    words: "the user PIN is locked after too many failed logins",
    hint: "the security officer must unlock or reset it (for SoftHSM2: softhsm2-util --init-pin)"
  },
  CKR_PIN_EXPIRED: {
    code: "PIN_EXPIRED",
    words: "the user PIN has expired",
    hint: "set a new PIN with the token's own tool (e.g. pkcs11-tool --change-pin), then try again"
  },
  CKR_PIN_LEN_RANGE: {
    code: "PIN_INCORRECT",
    words: "the PIN has a length the token does not accept",
    hint: "check the PIN source for stray characters"
  },
  CKR_PIN_INVALID: { code: "PIN_INCORRECT", words: "the PIN contains characters the token does not accept" },
  CKR_USER_PIN_NOT_INITIALIZED: {
    code: "LOGIN_FAILED",
    words: "the token's user PIN was never initialised",
    hint: "initialise it with softhsm2-util --init-pin or pkcs11-tool --init-pin"
  },
  CKR_USER_NOT_LOGGED_IN: { code: "LOGIN_FAILED", words: "the operation needs a login", hint: "give a PIN" },
  CKR_TOKEN_NOT_PRESENT: {
    code: "TOKEN_NOT_FOUND",
    words: "the token is not present",
    hint: "insert the token or check the module's configuration"
  },
  CKR_TOKEN_NOT_RECOGNIZED: { code: "TOKEN_NOT_FOUND", words: "the token was not recognised" },
  CKR_DEVICE_REMOVED: { code: "TOKEN_ERROR", words: "the token was removed during the operation" },
  CKR_SLOT_ID_INVALID: {
    code: "TOKEN_NOT_FOUND",
    words: "the slot does not exist (slot ids can change when a token is initialised)",
    hint: "select the token by label or serial instead of slot-id"
  },
  CKR_MECHANISM_INVALID: {
    code: "MECHANISM_UNSUPPORTED",
    words: "the token does not support this mechanism",
    hint: "list what the key offers with `codesign keys` and choose --mechanism accordingly"
  },
  CKR_MECHANISM_PARAM_INVALID: {
    code: "MECHANISM_UNSUPPORTED",
    words: "the token rejected the mechanism parameters"
  },
  CKR_KEY_TYPE_INCONSISTENT: {
    code: "MECHANISM_UNSUPPORTED",
    words: "the mechanism does not fit this key type"
  },
  CKR_KEY_FUNCTION_NOT_PERMITTED: {
    code: "MECHANISM_UNSUPPORTED",
    words: "the key is not allowed to sign (CKA_SIGN is false)"
  },
  CKR_DATA_LEN_RANGE: {
    code: "INVALID_INPUT",
    words: "the data to sign has a length the token does not accept"
  },
  CKR_FUNCTION_FAILED: {
    code: "TOKEN_ERROR",
    words: "the module reported a failure; for network modules this usually means a transient error (timeout, HTTP 503)",
    hint: "try again later"
  },
  CKR_DEVICE_ERROR: {
    code: "TOKEN_ERROR",
    words: "the token or signing service reported an error (for network modules: a non-transient service error)"
  },
  CKR_ARGUMENTS_BAD: {
    code: "TOKEN_ERROR",
    words: "the module rejected the request (for network modules: the service refused it, HTTP 4xx)",
    hint: "check the key, its permissions on the service and the module configuration"
  },
  CKR_GENERAL_ERROR: { code: "TOKEN_ERROR", words: "the module reported an unspecified error" },
  CKR_DEVICE_MEMORY: { code: "TOKEN_ERROR", words: "the token is out of memory" },
  CKR_SESSION_COUNT: {
    code: "TOKEN_ERROR",
    words: "the token has no free sessions",
    hint: "use fewer --jobs"
  },
  CKR_TOKEN_WRITE_PROTECTED: { code: "TOKEN_ERROR", words: "the token is write-protected" },
  CKR_CRYPTOKI_NOT_INITIALIZED: { code: "INTERNAL", words: "the module was used before C_Initialize" }
};
function ckrName(e) {
  if (e instanceof Error && /^CKR_[A-Z0-9_]+$/.test(e.message)) return e.message;
  return void 0;
}
function fromPkcs11Error(e, during) {
  if (e instanceof CodesignError) return e;
  const name = ckrName(e);
  if (name === void 0) {
    const text = e instanceof Error ? e.message : String(e);
    return new CodesignError("TOKEN_ERROR", `${during} failed: ${text}`, { cause: e });
  }
  const meaning = MEANINGS[name];
  if (meaning === void 0) {
    return new CodesignError("TOKEN_ERROR", `${during} failed: ${name}`, { cause: e });
  }
  return new CodesignError(meaning.code, `${during} failed: ${meaning.words} (${name})`, {
    ...meaning.hint === void 0 ? {} : { hint: meaning.hint },
    cause: e
  });
}

// src/core/pkcs11/native.ts
import { createRequire } from "node:module";
var cached;
function loadPkcs11Js() {
  if (cached) return cached;
  try {
    cached = createRequire(import.meta.url)("pkcs11js");
    return cached;
  } catch (cause) {
    throw new CodesignError("NATIVE_ADDON", "the pkcs11js native addon could not be loaded", {
      hint: "run `npm ci` (it builds node_modules/pkcs11js with node-gyp; python3, make and g++ are needed)",
      cause
    });
  }
}

// src/core/pkcs11/module.ts
function sessionCountOf(n) {
  return n === 0 || n >= 2147483648 ? void 0 : n;
}
var TOKEN_FLAGS = [
  ["CKF_RNG", "rng"],
  ["CKF_WRITE_PROTECTED", "write-protected"],
  ["CKF_LOGIN_REQUIRED", "login-required"],
  ["CKF_USER_PIN_INITIALIZED", "user-pin-initialized"],
  ["CKF_PROTECTED_AUTHENTICATION_PATH", "protected-authentication-path"],
  ["CKF_TOKEN_INITIALIZED", "token-initialized"],
  ["CKF_USER_PIN_COUNT_LOW", "user-pin-count-low"],
  ["CKF_USER_PIN_FINAL_TRY", "user-pin-final-try"],
  ["CKF_USER_PIN_LOCKED", "user-pin-locked"],
  ["CKF_USER_PIN_TO_BE_CHANGED", "user-pin-to-be-changed"]
];
var trim = (s) => s.replace(/[\s\0]+$/, "");
function slotIdOf(handle) {
  return handle.length >= 8 ? handle.readBigUInt64LE(0).toString() : handle.readUInt32LE(0).toString();
}
function call(during, fn) {
  try {
    return fn();
  } catch (e) {
    throw fromPkcs11Error(e, during);
  }
}
var Pkcs11Module = class _Pkcs11Module {
  lib;
  p11;
  path;
  finalized = false;
  /** Whether close() may C_Finalize: false for a worker thread that joined the main thread's module. */
  owner;
  constructor(lib, p11, path, owner = true) {
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
  static join(modulePath) {
    const lib = loadPkcs11Js();
    const p11 = new lib.PKCS11();
    try {
      p11.load(modulePath);
    } catch (cause) {
      throw new CodesignError("MODULE_NOT_FOUND", `cannot load PKCS#11 module ${modulePath}`, { cause });
    }
    try {
      p11.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
      return new _Pkcs11Module(lib, p11, modulePath, true);
    } catch (e) {
      if (ckrName(e) === "CKR_CRYPTOKI_ALREADY_INITIALIZED")
        return new _Pkcs11Module(lib, p11, modulePath, false);
      p11.close();
      throw fromPkcs11Error(e, `C_Initialize of ${modulePath} in a signing thread`);
    }
  }
  static open(modulePath, initArgs) {
    const lib = loadPkcs11Js();
    const p11 = new lib.PKCS11();
    try {
      p11.load(modulePath);
    } catch (cause) {
      throw new CodesignError("MODULE_NOT_FOUND", `cannot load PKCS#11 module ${modulePath}`, {
        hint: "check that the file is a PKCS#11 library for this machine's architecture",
        cause
      });
    }
    try {
      p11.C_Initialize(
        initArgs ? { flags: lib.CKF_OS_LOCKING_OK, libraryParameters: `${initArgs.reveal()}\0` } : { flags: lib.CKF_OS_LOCKING_OK }
      );
    } catch (e) {
      p11.close();
      throw initializeError(e, modulePath, initArgs);
    }
    return new _Pkcs11Module(lib, p11, modulePath);
  }
  close() {
    if (this.finalized) return;
    this.finalized = true;
    try {
      if (this.owner) this.p11.C_Finalize();
    } finally {
      this.p11.close();
    }
  }
  describe() {
    const info = call("C_GetInfo", () => this.p11.C_GetInfo());
    return {
      path: this.path,
      manufacturer: trim(info.manufacturerID),
      description: trim(info.libraryDescription),
      version: `${info.libraryVersion.major}.${info.libraryVersion.minor}`,
      cryptokiVersion: `${info.cryptokiVersion.major}.${info.cryptokiVersion.minor}`
    };
  }
  tokens() {
    const slots = call("C_GetSlotList", () => this.p11.C_GetSlotList(true));
    const out = [];
    for (const handle of slots) {
      const slot = call("C_GetSlotInfo", () => this.p11.C_GetSlotInfo(handle));
      let token;
      try {
        token = this.p11.C_GetTokenInfo(handle);
      } catch {
        continue;
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
          ([name]) => (token.flags & this.lib[name]) !== 0
        ).map(([, word]) => word)
      });
    }
    return out;
  }
  /** Initialised tokens matching the URI's token, slot and library attributes. */
  matchingTokens(uri) {
    const tokens = this.tokens().filter((t) => t.flags.includes("token-initialized"));
    if (!uri) return tokens;
    const p = uri.path;
    if (p["library-manufacturer"] !== void 0 || p["library-description"] !== void 0 || p["library-version"] !== void 0) {
      const m = this.describe();
      if (p["library-manufacturer"] !== void 0 && p["library-manufacturer"] !== m.manufacturer) return [];
      if (p["library-description"] !== void 0 && p["library-description"] !== m.description) return [];
      if (p["library-version"] !== void 0 && !versionMatches(p["library-version"], m.version)) return [];
    }
    return tokens.filter(
      (t) => (p.token === void 0 || p.token === t.label) && (p.manufacturer === void 0 || p.manufacturer === t.manufacturer) && (p.model === void 0 || p.model === t.model) && (p.serial === void 0 || p.serial === t.serial) && (p["slot-id"] === void 0 || String(p["slot-id"]) === t.slotId) && (p["slot-description"] === void 0 || p["slot-description"] === t.slotDescription) && (p["slot-manufacturer"] === void 0 || p["slot-manufacturer"] === t.slotManufacturer)
    );
  }
  /** Exactly one token for the URI, or an error that lists what is there. */
  selectToken(uri) {
    const found = this.matchingTokens(uri);
    if (found.length === 1 && found[0]) return found[0];
    const all = this.tokens();
    const listing = all.map((t) => `"${t.label}" (serial ${t.serial}, slot ${t.slotId})`).join(", ") || "none";
    if (found.length === 0) {
      throw new CodesignError("TOKEN_NOT_FOUND", `no token matches the key URI (module ${this.path})`, {
        hint: `tokens present: ${listing}; run \`codesign tokens\` and use its URI`
      });
    }
    throw new CodesignError("AMBIGUOUS", `${found.length} tokens match the key URI`, {
      hint: `add token= or serial= to the URI; tokens present: ${listing}`
    });
  }
  openSession(token, opts = {}) {
    const flags = this.lib.CKF_SERIAL_SESSION | (opts.readWrite ? this.lib.CKF_RW_SESSION : 0);
    const handle = call("C_OpenSession", () => this.p11.C_OpenSession(token.handle, flags));
    return new Session(this, token, handle);
  }
  /**
   * Names of the mechanisms the token offers, with their flags. `describe` limits the
   * C_GetMechanismInfo calls (one round trip each on a network token) to the names it accepts;
   * the others are listed unflagged.
   */
  mechanisms(token, describe = () => true) {
    const list = call("C_GetMechanismList", () => this.p11.C_GetMechanismList(token.handle));
    const names = mechanismNames(this.lib);
    const out = /* @__PURE__ */ new Map();
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
      }
      out.set(type, { name, sign, minKey, maxKey });
    }
    return out;
  }
};
function optional(key2, value) {
  return value === void 0 ? {} : { [key2]: value };
}
function initializeError(e, modulePath, initArgs) {
  const base = fromPkcs11Error(e, `C_Initialize of ${modulePath}`);
  if (initArgs) {
    return new CodesignError(base.code, `${base.message} with the init string from ${initArgs.source}`, {
      hint: `check the init string (${initArgs.source}; not shown, as it can hold a password)`,
      cause: e
    });
  }
  if (ckrName(e) !== "CKR_ARGUMENTS_BAD") return base;
  return new CodesignError(
    "TOKEN_ERROR",
    `C_Initialize of ${modulePath} failed: the module rejected its initialisation arguments (CKR_ARGUMENTS_BAD)`,
    {
      hint: "this module may need an init string: give it with --module-args or CODESIGN_PKCS11_MODULE_ARGS (NSS softokn: configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=)",
      cause: e
    }
  );
}
function versionMatches(wanted2, actual) {
  const [wMajor, wMinor] = wanted2.split(".");
  const [aMajor, aMinor] = actual.split(".");
  return Number(wMajor) === Number(aMajor) && (wMinor === void 0 || Number(wMinor) === Number(aMinor));
}
var mechanismNameCache;
function mechanismNames(lib) {
  if (mechanismNameCache) return mechanismNameCache;
  mechanismNameCache = /* @__PURE__ */ new Map();
  for (const [name, value] of Object.entries(lib)) {
    if (name.startsWith("CKM_") && typeof value === "number" && !mechanismNameCache.has(value)) {
      mechanismNameCache.set(value, name);
    }
  }
  mechanismNameCache.set(CKM_EDDSA, "CKM_EDDSA");
  mechanismNameCache.set(CKM_EC_EDWARDS_KEY_PAIR_GEN, "CKM_EC_EDWARDS_KEY_PAIR_GEN");
  return mechanismNameCache;
}
var CKM_EDDSA = 4183;
var CKM_EC_EDWARDS_KEY_PAIR_GEN = 4181;
var CKS_RO_USER_FUNCTIONS = 1;
var CKS_RW_USER_FUNCTIONS = 3;
var Session = class {
  module;
  token;
  handle;
  closed = false;
  constructor(module2, token, handle) {
    this.module = module2;
    this.token = token;
    this.handle = handle;
  }
  get p11() {
    return this.module.p11;
  }
  /**
   * One C_Login, never retried: a wrong PIN tried again is how tokens get locked.
   * Already logged in (another session of this process) counts as success.
   */
  login(pin, userType = "user") {
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
  contextLogin(pin) {
    try {
      this.p11.C_Login(this.handle, this.module.lib.CKU_CONTEXT_SPECIFIC, pin.reveal());
    } catch (e) {
      throw fromPkcs11Error(e, `per-signature login to key on token "${this.token.label}"`);
    }
  }
  /** Whether the session is in a user state (logged in): C_GetSessionInfo. */
  loggedIn() {
    const { state } = call("C_GetSessionInfo", () => this.p11.C_GetSessionInfo(this.handle));
    return state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
  }
  /** Whether the session still answers (C_GetSessionInfo): false once the token or its server is gone. */
  alive() {
    if (this.closed) return false;
    try {
      this.p11.C_GetSessionInfo(this.handle);
      return true;
    } catch {
      return false;
    }
  }
  logout() {
    try {
      this.p11.C_Logout(this.handle);
    } catch {
    }
  }
  close() {
    if (this.closed) return;
    this.closed = true;
    try {
      this.p11.C_CloseSession(this.handle);
    } catch {
    }
  }
  find(template, max = 1e3) {
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
  attributes(object, types) {
    const out = /* @__PURE__ */ new Map();
    if (types.length > 1) {
      try {
        const got = this.p11.C_GetAttributeValue(
          this.handle,
          object,
          types.map((type) => ({ type }))
        );
        if (got.length === types.length && got.every((a) => a.value !== void 0)) {
          for (const a of got) out.set(a.type, a.value);
          return out;
        }
      } catch {
      }
    }
    for (const type of types) {
      try {
        const [attr] = this.p11.C_GetAttributeValue(this.handle, object, [{ type }]);
        out.set(type, attr?.value);
      } catch {
        out.set(type, void 0);
      }
    }
    return out;
  }
  /** `authorize` runs between C_SignInit and C_Sign: the context login of always-authenticate keys. */
  async signOnce(mechanism, key2, data, authorize) {
    call("C_SignInit", () => this.p11.C_SignInit(this.handle, mechanism, key2));
    try {
      authorize?.(this);
    } catch (e) {
      try {
        this.p11.C_Sign(this.handle, data, Buffer.alloc(1024));
      } catch {
      }
      throw e;
    }
    try {
      return await this.p11.C_SignAsync(this.handle, data, Buffer.alloc(1024));
    } catch (e) {
      throw fromPkcs11Error(e, "C_Sign");
    }
  }
};

// src/core/pkcs11/pin.ts
import { inspect } from "node:util";
var Secret = class {
  #value;
  source;
  constructor(value, source) {
    this.#value = value;
    this.source = source;
  }
  reveal() {
    return this.#value;
  }
  toString() {
    return "[redacted]";
  }
  toJSON() {
    return "[redacted]";
  }
  [inspect.custom]() {
    return `Secret([redacted] from ${this.source})`;
  }
};

// src/core/pkcs11/sign-worker.ts
var port = parentPort;
if (!port) throw new Error("sign-worker.js runs as a worker thread only");
var post = (m, transfer = []) => port.postMessage(m, transfer);
var buf = (u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
function errorOf(e) {
  const ckr = ckrName(e) ?? (e instanceof Error ? ckrName(e.cause) : void 0);
  const base = e instanceof CodesignError ? { code: e.code, message: e.message, ...e.hint === void 0 ? {} : { hint: e.hint } } : { code: "INTERNAL", message: e instanceof Error ? e.message : String(e) };
  return ckr === void 0 ? base : { ...base, ckr };
}
var setup = workerData;
var module;
var session;
var wanted;
var key;
var ownLogin = false;
function start() {
  module = Pkcs11Module.join(setup.modulePath);
  session = module.openSession({ ...setup.token, handle: buf(setup.token.handle) });
}
var shared = false;
var readyPosted = false;
var lock = new Int32Array(setup.loginLock);
var PIN_ERRORS = /* @__PURE__ */ new Set(["PIN_INCORRECT", "PIN_LOCKED", "PIN_EXPIRED", "LOGIN_FAILED"]);
function afterMainLogin(pin, source) {
  const s = session;
  if (!s) throw new CodesignError("INTERNAL", "the signing thread has no session");
  if (s.loggedIn()) {
    shared = true;
    maybeReady();
    return;
  }
  if (pin === void 0 || source === void 0) {
    throw new CodesignError("LOGIN_FAILED", "a signing thread needs a login, and none is given");
  }
  while (Atomics.compareExchange(lock, 0, 0, 1) !== 0) Atomics.wait(lock, 0, 1);
  try {
    if (Atomics.load(lock, 1) !== 0) {
      throw new CodesignError("LOGIN_FAILED", "another signing thread's login was refused; not trying again");
    }
    try {
      s.login(new Secret(pin, source));
    } catch (e) {
      if (e instanceof CodesignError && PIN_ERRORS.has(e.code)) Atomics.store(lock, 1, 1);
      throw e;
    }
  } finally {
    Atomics.store(lock, 0, 0);
    Atomics.notify(lock, 0, 1);
  }
  ownLogin = true;
  maybeReady();
}
function maybeReady() {
  const s = session;
  const k = wanted;
  if (!s || !k || readyPosted || !(shared || ownLogin)) return;
  if (shared) {
    key = buf(k.handle);
  } else {
    const lib = s.module.lib;
    const found = s.find(
      [
        { type: lib.CKA_CLASS, value: lib.CKO_PRIVATE_KEY },
        { type: lib.CKA_ID, value: Buffer.from(k.id) },
        ...k.label === "" ? [] : [{ type: lib.CKA_LABEL, value: k.label }]
      ],
      2
    );
    const [handle] = found;
    if (found.length !== 1 || !handle) {
      throw new CodesignError(
        "KEY_NOT_FOUND",
        `a signing thread found ${found.length} keys where the main thread found one`
      );
    }
    key = handle;
  }
  readyPosted = true;
  post({ kind: "ready", loggedIn: shared ? "shared" : "own" });
}
function shutdown() {
  if (!module?.owner) {
    if (ownLogin) session?.logout();
    session?.close();
  }
  session = void 0;
  try {
    module?.close();
  } catch {
  }
  module = void 0;
}
function failed(e) {
  shutdown();
  post({ kind: "failed", error: errorOf(e) });
}
try {
  start();
} catch (e) {
  failed(e);
}
port.on("message", (m) => {
  if (m.kind === "logged-in") {
    try {
      afterMainLogin(m.pin, m.source);
    } catch (e) {
      failed(e);
    }
    return;
  }
  if (m.kind === "key") {
    wanted = m.key;
    try {
      maybeReady();
    } catch (e) {
      failed(e);
    }
    return;
  }
  if (m.kind === "close") {
    shutdown();
    post({ kind: "closed" });
    port.close();
    return;
  }
  const s = session;
  const k = key;
  if (!s || !k) {
    post({
      kind: "error",
      id: m.id,
      error: { code: "INTERNAL", message: "the signing thread has no session" }
    });
    return;
  }
  s.signOnce(m.mechanism, k, buf(m.data)).then(
    (signature) => {
      const own = new Uint8Array(signature);
      post({ kind: "signed", id: m.id, signature: own }, [own.buffer]);
    },
    (e) => post({ kind: "error", id: m.id, error: errorOf(e) })
  );
});
