/**
 * The contracts adapters satisfy (checked with `satisfies`), so adding a tool is adding one file.
 * Two kinds of tool exist:
 * - a tool that only shapes a file (osslsigncode): it prepares what must be signed and attaches
 *   the finished signature; codesign's core signs in between, and the tool never sees the token;
 * - a tool that must log in itself (jarsigner through SunPKCS11, openssl through libp11): the
 *   explicit exception. The app prepares a SignJob — key found, PIN checked by one login of our
 *   own, certificate exported, a private work directory — and the adapter builds the command line.
 */
import type { FailoverOptions } from "../src/core/util/failover.js";
import type { KeyInfo } from "../src/core/pkcs11/keys.js";
import type { Secret } from "../src/core/pkcs11/pin.js";
import type { TokenEntry } from "../src/core/pkcs11/module.js";
import type { HashName } from "../src/core/signer.js";

export type ToolName = "osslsigncode" | "jarsigner" | "openssl" | "apksigner";

export interface ToolAdapter {
  readonly name: ToolName;
  /** The tool's version, or a TOOL_FAILED error naming what is missing or too old. */
  version(toolPath?: string): Promise<string>;
}

/** A tool that prepares a file for signing and attaches the signature codesign made. */
export interface ShapingAdapter extends ToolAdapter {
  extractData(o: {
    input: string;
    hash: HashName;
    output: string;
    toolPath?: string | undefined;
  }): Promise<void>;
  attachSignature(o: {
    input: string;
    signature: string;
    output: string;
    hash: HashName;
    caFile: string;
    nest?: boolean;
    toolPath?: string | undefined;
  }): Promise<void>;
}

export interface SignJob {
  /** The file to sign; never modified. */
  input: string;
  /** Where the tool writes its result: a temp path the caller renames onto the output on success. */
  output: string;
  /** The key's RFC 7512 URI for the tool: token, object/id, type=private; no PIN, no module. */
  keyUri: string;
  key: KeyInfo;
  token: TokenEntry;
  /** The PKCS#11 module the tool must load. */
  modulePath: string;
  pin: Secret;
  /** PEM file of the signer certificate (exported from the token into workDir when it lives there). */
  certFile: string;
  /** True when the certificate is an object on the token (SunPKCS11 sees only such keys). */
  certOnToken: boolean;
  /** PEM files of further certificates to include. */
  chainFiles: string[];
  hash: HashName;
  /** RFC 3161 timestamp URLs, tried in order with fail-over. Empty: no timestamp. */
  timestamps: string[];
  failover: FailoverOptions;
  /** A private 0700 directory for generated configs; removed after the job. */
  workDir: string;
  /** The tool's executable when not on PATH. */
  toolPath?: string | undefined;
  /** Tool-specific choices, e.g. { mode: "cms" } for openssl. */
  options: Record<string, string | boolean | undefined>;
}

export interface SignOutcome {
  tool: ToolName;
  version: string;
  /** The timestamp server that answered, when one was asked for. */
  timestampUrl?: string | undefined;
}

/** A tool that logs in to the token itself. */
export interface SigningAdapter extends ToolAdapter {
  readonly name: "jarsigner" | "openssl" | "apksigner";
  /** The exact argv the tool is run with (no PIN in it, ever); pure, for tests and --debug. */
  args(job: SignJob, extra?: { timestampUrl?: string }): string[];
  sign(job: SignJob): Promise<SignOutcome>;
}

/** One signature of an Authenticode or JAR file, as its tool's verifier reported it. */
export interface ToolSignatureReport {
  /** 0: the primary signature; 1…: nested ones. */
  index: number;
  signer?: string;
  hash?: string;
  timestamp?: string;
  /** Whether it verified and chained to a trust anchor. */
  trusted: boolean;
  /** The tool's words when it did not. */
  problem?: string;
}
