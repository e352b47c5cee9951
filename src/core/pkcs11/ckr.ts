import { CodesignError, type ErrorCode } from "../errors.js";

interface CkrMeaning {
  code: ErrorCode;
  words: string;
  hint?: string;
}

/**
 * What a CKR_* value means to a user. The network-module meanings follow what cloud signing
 * services document for their PKCS#11 libraries (transient, service error, request rejected).
 */
const MEANINGS: Record<string, CkrMeaning> = {
  CKR_PIN_INCORRECT: {
    code: "PIN_INCORRECT",
    words: "the PIN was rejected by the token",
    hint: "check the PIN source; codesign does not retry, because repeated failures lock the token",
  },
  CKR_PIN_LOCKED: {
    code: "PIN_LOCKED",
    words: "the user PIN is locked after too many failed logins",
    hint: "the security officer must unlock or reset it (for SoftHSM2: softhsm2-util --init-pin)",
  },
  CKR_PIN_EXPIRED: {
    code: "PIN_EXPIRED",
    words: "the user PIN has expired",
    hint: "set a new PIN with the token's own tool (e.g. pkcs11-tool --change-pin), then try again",
  },
  CKR_PIN_LEN_RANGE: {
    code: "PIN_INCORRECT",
    words: "the PIN has a length the token does not accept",
    hint: "check the PIN source for stray characters",
  },
  CKR_PIN_INVALID: { code: "PIN_INCORRECT", words: "the PIN contains characters the token does not accept" },
  CKR_USER_PIN_NOT_INITIALIZED: {
    code: "LOGIN_FAILED",
    words: "the token's user PIN was never initialised",
    hint: "initialise it with softhsm2-util --init-pin or pkcs11-tool --init-pin",
  },
  CKR_USER_NOT_LOGGED_IN: { code: "LOGIN_FAILED", words: "the operation needs a login", hint: "give a PIN" },
  CKR_TOKEN_NOT_PRESENT: {
    code: "TOKEN_NOT_FOUND",
    words: "the token is not present",
    hint: "insert the token or check the module's configuration",
  },
  CKR_TOKEN_NOT_RECOGNIZED: { code: "TOKEN_NOT_FOUND", words: "the token was not recognised" },
  CKR_DEVICE_REMOVED: { code: "TOKEN_ERROR", words: "the token was removed during the operation" },
  CKR_SLOT_ID_INVALID: {
    code: "TOKEN_NOT_FOUND",
    words: "the slot does not exist (slot ids can change when a token is initialised)",
    hint: "select the token by label or serial instead of slot-id",
  },
  CKR_MECHANISM_INVALID: {
    code: "MECHANISM_UNSUPPORTED",
    words: "the token does not support this mechanism",
    hint: "list what the key offers with `codesign keys` and choose --mechanism accordingly",
  },
  CKR_MECHANISM_PARAM_INVALID: {
    code: "MECHANISM_UNSUPPORTED",
    words: "the token rejected the mechanism parameters",
  },
  CKR_KEY_TYPE_INCONSISTENT: {
    code: "MECHANISM_UNSUPPORTED",
    words: "the mechanism does not fit this key type",
  },
  CKR_KEY_FUNCTION_NOT_PERMITTED: {
    code: "MECHANISM_UNSUPPORTED",
    words: "the key is not allowed to sign (CKA_SIGN is false)",
  },
  CKR_DATA_LEN_RANGE: {
    code: "INVALID_INPUT",
    words: "the data to sign has a length the token does not accept",
  },
  CKR_FUNCTION_FAILED: {
    code: "TOKEN_ERROR",
    words:
      "the module reported a failure; for network modules this usually means a transient error (timeout, HTTP 503)",
    hint: "try again later",
  },
  CKR_DEVICE_ERROR: {
    code: "TOKEN_ERROR",
    words:
      "the token or signing service reported an error (for network modules: a non-transient service error)",
  },
  CKR_ARGUMENTS_BAD: {
    code: "TOKEN_ERROR",
    words: "the module rejected the request (for network modules: the service refused it, HTTP 4xx)",
    hint: "check the key, its permissions on the service and the module configuration",
  },
  CKR_GENERAL_ERROR: { code: "TOKEN_ERROR", words: "the module reported an unspecified error" },
  CKR_DEVICE_MEMORY: { code: "TOKEN_ERROR", words: "the token is out of memory" },
  CKR_SESSION_COUNT: {
    code: "TOKEN_ERROR",
    words: "the token has no free sessions",
    hint: "use fewer --jobs",
  },
  CKR_TOKEN_WRITE_PROTECTED: { code: "TOKEN_ERROR", words: "the token is write-protected" },
  CKR_CRYPTOKI_NOT_INITIALIZED: { code: "INTERNAL", words: "the module was used before C_Initialize" },
};

export function ckrName(e: unknown): string | undefined {
  if (e instanceof Error && /^CKR_[A-Z0-9_]+$/.test(e.message)) return e.message;
  return undefined;
}

/** Turns a pkcs11js error into our error, naming the call that failed and what it means. */
export function fromPkcs11Error(e: unknown, during: string): CodesignError {
  if (e instanceof CodesignError) return e;
  const name = ckrName(e);
  if (name === undefined) {
    const text = e instanceof Error ? e.message : String(e);
    return new CodesignError("TOKEN_ERROR", `${during} failed: ${text}`, { cause: e });
  }
  const meaning = MEANINGS[name];
  if (meaning === undefined) {
    return new CodesignError("TOKEN_ERROR", `${during} failed: ${name}`, { cause: e });
  }
  return new CodesignError(meaning.code, `${during} failed: ${meaning.words} (${name})`, {
    ...(meaning.hint === undefined ? {} : { hint: meaning.hint }),
    cause: e,
  });
}
