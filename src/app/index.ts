/**
 * codesign's library API: the same `sign()` and `verify()` the command line and the GitHub
 * Action run.
 */
export { sign, formatFor } from "./sign.js";
export { verify } from "./verify.js";
export { sha256Fingerprint, normaliseFingerprint } from "./verify.js";
export type { VerifyOptions, VerifyResult, ToolVerifyReport } from "./verify.js";
export { verifyTree } from "./tree.js";
export type { TreeOptions, TreeReport, TreeRow, TreeKind, TreeStatus, TreeSummary } from "./tree.js";
export { signBytes } from "./sign-bytes.js";
export type { SignBytesOptions, SignedBytes } from "./sign-bytes.js";
export { TOOL_CHOICES } from "./options.js";
export type {
  FileDetail,
  FileResult,
  FormatName,
  SignOptions,
  SignReport,
  TimestampOptions,
  ToolChoice,
} from "./options.js";
export type { HashName, SignatureScheme, SignatureFormat } from "../core/signer.js";
export { CodesignError, isCodesignError, type ErrorCode } from "../core/errors.js";
