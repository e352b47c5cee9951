/**
 * The one error type of codesign. Callers switch on `code`, never on message text;
 * the CLI maps codes to exit codes in one place (src/cli/exit-codes.ts).
 */
export type ErrorCode =
  | "USAGE" // bad flags or arguments
  | "INVALID_INPUT" // a value we were given is malformed (URI, PIN file, certificate...)
  | "PIN_REQUIRED" // no PIN source available
  | "PIN_INCORRECT"
  | "PIN_LOCKED"
  | "PIN_EXPIRED"
  | "PIN_FILE_INSECURE"
  | "LOGIN_FAILED"
  | "MODULE_NOT_FOUND"
  | "TOKEN_NOT_FOUND"
  | "KEY_NOT_FOUND"
  | "CERT_NOT_FOUND"
  | "AMBIGUOUS" // more than one token/key matches
  | "MECHANISM_UNSUPPORTED"
  | "TOKEN_ERROR" // any other CKR_* from the module
  | "NATIVE_ADDON" // pkcs11js could not be loaded
  | "TOOL_FAILED" // an external tool failed or is missing
  | "NETWORK"
  | "VERIFY_FAILED"
  | "IO" // file system trouble
  | "INTERNAL";

export interface ErrorDetails {
  /** What the user can do about it. Printed after the message. */
  hint?: string;
  cause?: unknown;
}

export class CodesignError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "CodesignError";
    this.code = code;
    this.hint = details.hint;
  }
}

export function isCodesignError(e: unknown): e is CodesignError {
  return e instanceof CodesignError;
}
