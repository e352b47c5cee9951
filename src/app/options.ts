/**
 * What `sign()` takes and returns. Built once from the command line (src/cli) and once from the
 * Action's inputs (src/action); neither knows the other's flags, so errors raised from here speak
 * of the problem, not of an option name.
 */
import type { FailoverOptions } from "../core/util/failover.js";
import type { SchedulerStats } from "../core/util/scheduler.js";
import type { HashName, SignatureFormat, SignatureScheme } from "../core/signer.js";
import type { BatchResult } from "./batch.js";

/**
 * How a file is signed: in-process formats whose signature the token makes (raw, cms, jar, and
 * Authenticode shaped by osslsigncode), or a tool that logs in itself (jarsigner, openssl, apksigner).
 */
export type FormatName = "raw" | "cms" | "osslsigncode" | "jar" | "jarsigner" | "openssl" | "apksigner";
export type ToolChoice = "auto" | FormatName;
export const TOOL_CHOICES: readonly ToolChoice[] = [
  "auto",
  "raw",
  "cms",
  "osslsigncode",
  "jar",
  "jarsigner",
  "openssl",
  "apksigner",
];

/** The formats whose tool logs in to the token itself (src/app/formats/tool.ts). */
export type LoginToolName = "jarsigner" | "openssl" | "apksigner";
export const isLoginTool = (name: FormatName): name is LoginToolName =>
  name === "jarsigner" || name === "openssl" || name === "apksigner";

export interface TimestampOptions {
  /** RFC 3161 servers, tried in order. */
  urls: readonly string[];
  /** Extra attempts per server after the first (default 2). */
  retries?: number | undefined;
  /** Seconds to wait for each attempt (default 10). */
  timeoutSeconds?: number | undefined;
  /** Told about each failed attempt, e.g. to print it. */
  onFailure?: FailoverOptions["onFailure"];
  /** Anchors for the TSA's certificate (PEM bundles or DER); default the system store. */
  tsaCa?: readonly string[] | undefined;
  /** Embed a timestamp whose TSA chains to no anchor (its token is still checked). */
  allowUntrustedTsa?: boolean | undefined;
  /** Timestamp requests in flight at once over the whole run (default 4). */
  jobs?: number | undefined;
  /** Timestamp requests started per second at most, spaced evenly (default: no limit). */
  ratePerSecond?: number | undefined;
  /** Told once when a server failed BREAK_AFTER (3) times in a row and is skipped from then on. */
  onSkip?: ((event: { url: string; failures: number; reason: string }) => void) | undefined;
}

export interface SignOptions {
  /** The files to sign, in order; one file is a batch of one. */
  files: readonly string[];
  /** RFC 7512 URI of the private key. */
  key: string;
  /** PKCS#11 module; default: from the URI, $CODESIGN_PKCS11_MODULE, p11-kit-proxy. */
  module?: string | undefined;
  /** The module's init string (C_Initialize pReserved); default: from p11-kit's module file, $CODESIGN_PKCS11_MODULE_ARGS. */
  moduleArgs?: string | undefined;
  /** A file holding only the PIN (else pin-source in the URI, $CODESIGN_PIN, promptPin). */
  pinFile?: string | undefined;
  /** Asks for the PIN when no other source has one. */
  promptPin?: (() => Promise<string>) | undefined;
  /** Default "auto": the format each file's type calls for. */
  tool?: ToolChoice | undefined;
  /** The output of a single file (default beside it: .sig, .p7s, or <name>.signed<ext>). */
  out?: string | undefined;
  /** A directory for every output, named after its input. */
  outDir?: string | undefined;
  /** Signed copies (Authenticode, JAR) replace their inputs, once each copy verifies. */
  inPlace?: boolean | undefined;
  /** Seconds a batch waits for a token that failed transiently or went away (default 30; 0: no retry). */
  tokenRetrySeconds?: number | undefined;
  /**
   * Signatures in flight at once, each on its own session of the one login. Default "auto": from
   * the token's session limit and measured round trip, adjusted while signing (docs/batch.md).
   */
  jobs?: number | "auto" | undefined;
  /** Stop at the first failed file; the rest are reported as not signed. */
  failFast?: boolean | undefined;
  /** Default sha256. */
  hash?: HashName | undefined;
  /** Default from the key: rsa-pkcs1, ecdsa or eddsa. */
  mechanism?: SignatureScheme | undefined;
  /** Raw ECDSA signatures: DER (default) or IEEE P1363 r‖s. */
  signatureFormat?: SignatureFormat | undefined;
  /** Signer certificate file; default the certificate on the token with the key's CKA_ID. */
  cert?: string | undefined;
  /** Further certificates to include. */
  chain?: readonly string[] | undefined;
  timestamp?: TimestampOptions | undefined;
  /** CMS: embed the content. */
  attached?: boolean | undefined;
  /** CMS: DER (default) or PEM. */
  encoding?: "der" | "pem" | undefined;
  /** CMS: sign contentType, messageDigest and signingTime (default true). */
  signedAttributes?: boolean | undefined;
  /** Authenticode: program description and URL. */
  description?: string | undefined;
  url?: string | undefined;
  /**
   * Authenticode, a file that already carries a signature: add the new one beside it (nested,
   * `nest`), drop the existing ones (`replace`), or leave the file untouched and report it as
   * skipped (`skipSigned`). With none of them such a file is refused before any PIN is asked for.
   * Unsigned files are signed as usual whichever is chosen.
   */
  nest?: boolean | undefined;
  replace?: boolean | undefined;
  skipSigned?: boolean | undefined;
  /**
   * Authenticode: write the signature (a PKCS#7) to `out` — or `<name>.p7` beside each input, or
   * in `outDir` — and leave the file unchanged; `attach()` puts it in later.
   */
  detachedSignature?: boolean | undefined;
  /** Check everything a run needs and sign nothing (`dryRun(options)`, src/app/plan.ts). */
  dryRun?: boolean | undefined;
  /** Dry run: log in to prove the PIN (otherwise the token is opened without a login). */
  login?: boolean | undefined;
  /** openssl: `dgst -sign` (default) or `cms -sign`. */
  opensslMode?: "dgst" | "cms" | undefined;
  /** The external tool's executable, when not on PATH. */
  toolPath?: string | undefined;
  /** Told as each file finishes, e.g. for a progress bar. */
  onProgress?: ((done: number, total: number, file: { input: string; ok: boolean }) => void) | undefined;
}

/** What one file's signing produced, by format. */
export interface FileDetail {
  scheme?: string;
  hash?: string;
  format?: string;
  bytes?: number;
  attached?: boolean;
  encoding?: "der" | "pem";
  tool?: string;
  version?: string;
  timestamp?: { url: string; genTime?: string };
  /** Left as it was (already signed, with skipSigned); `reason` says why. */
  skipped?: boolean;
  reason?: string;
  /** Authenticode: the new signature was nested beside existing ones (with its sequence number). */
  nested?: { sequence: number };
  /** Authenticode: the existing signatures were replaced. */
  replaced?: boolean;
  /** Authenticode: the output is the PKCS#7 alone; the input is unchanged. */
  detached?: boolean;
}

/** `--jobs` as the run used it. */
export interface JobsReport {
  requested: number | "auto";
  /** Signatures in flight the run ended with (under auto: the value it settled on). */
  settled: number;
  /** in-process: sessions on the main thread; threads: one signing thread per session (slow tokens). */
  mode: "in-process" | "threads";
  /** The token's measured round trip (C_GetSessionInfo), in ms. */
  roundTripMs: number;
}

/** One row of the report per input, in input order: what was made, or why not. */
export type FileResult = Omit<BatchResult<FileDetail>, "detail"> & FileDetail;

export interface SignReport {
  ok: boolean;
  /** The format every file went through. */
  tool: FormatName;
  /** The key's full URI and type. */
  key: string;
  keyType?: string;
  signed: number;
  failed: number;
  /** Files left untouched (skipSigned): rows with `skipped: true`, counted neither signed nor failed. */
  skipped: number;
  /** Token sessions that signed in parallel (under --jobs auto: the most it could grow to). */
  sessions: number;
  /** How token signing ran; absent when nothing was signed with the token itself. */
  jobs?: JobsReport;
  files: FileResult[];
  ms: number;
  /** With timestamp servers: requests sent, failures, and the servers skipped after failing. */
  timestampStats?: SchedulerStats;
}

/** What `attach()` takes: a detached Authenticode signature and the file it was made for. */
export interface AttachOptions {
  /** The detached PKCS#7 (DER or PEM), as `sign` with detachedSignature writes it. */
  signature: string;
  /** The file to put it in; never modified. */
  input: string;
  /** Default `<name>.signed<ext>` beside the input. */
  out?: string | undefined;
  /** The input is already signed: add this signature beside the existing ones, or replace them. */
  nest?: boolean | undefined;
  replace?: boolean | undefined;
  toolPath?: string | undefined;
}

export interface AttachReport {
  input: string;
  output: string;
  signature: string;
  hash: HashName;
  /** The input already carried signatures, and they were kept (nest) or dropped (replace). */
  nested: boolean;
  replaced: boolean;
  tool: "osslsigncode";
  version: string;
  ms: number;
}
