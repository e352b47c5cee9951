/**
 * A format turns a file into what the token must sign and the signature into the output. Every
 * in-process format goes the same three steps — `prepare`, the one token signer, `finish` — so
 * the key is touched by codesign's core only, and a batch is the same pipeline as one file.
 */
import type { KeyInfo } from "../../core/pkcs11/keys.js";
import type { HashName, SignRequest, SignatureScheme } from "../../core/signer.js";
import type { RequestScheduler } from "../../core/util/scheduler.js";
import type { DeferredSync } from "../../core/util/files.js";
import type { BatchItem, OutputStyle } from "../batch.js";
import type { FileDetail, FormatName, SignOptions } from "../options.js";

/** Everything a run's files share once the token is open. */
export interface FormatContext {
  options: SignOptions;
  key: KeyInfo;
  hash: HashName;
  scheme: SignatureScheme;
  /** DER signer certificate and further certificates (formats that embed them). */
  certificate: Uint8Array | undefined;
  chain: Uint8Array[];
  /** The signer certificate (PEM) and the --chain files, for tools that want files. */
  certificateFiles: string[];
  /** A private 0700 directory removed when the run ends. */
  workDir: string;
  /** Outputs written this run, flushed to disk together before the run reports success. */
  outputs: DeferredSync;
  /** The digest of a file, reusing one started before the token was open. */
  digest(file: string, hash: HashName): Promise<Uint8Array>;
  /** The run's timestamp requests: concurrency and rate limits, a breaker per URL (with --timestamp). */
  timestamps?: RequestScheduler | undefined;
}

export interface PreparedSignature {
  /** What the token signs. */
  request: SignRequest;
  /** Builds the output around the signature and writes it atomically; nothing is left on failure. */
  finish(signature: Uint8Array): Promise<FileDetail>;
}

export interface TokenFormat {
  readonly name: Exclude<FormatName, "jarsigner" | "openssl">;
  readonly output: OutputStyle;
  /** Whether `prepare` needs the signer certificate in the context. */
  readonly needsCertificate: boolean;
  /** Files in flight per token session: reading, hashing and writing overlap the signatures. */
  readonly overlap: number;
  /** The hash this format computes over whole input files, so the pipeline can start early. */
  fileDigest(options: SignOptions): HashName | undefined;
  /** Refuses an input before any PIN is asked for or the token touched. */
  check(input: string, options: SignOptions): Promise<void>;
  /**
   * Why this run leaves an input as it is (e.g. already signed, with skipSigned), or undefined to
   * sign it. Asked after `check`, before the token is opened: a run of skipped files needs no PIN.
   */
  skip?(input: string, options: SignOptions): Promise<string | undefined>;
  /** Step 1: what must be signed for this file, and how to finish it. */
  prepare(item: BatchItem, ctx: FormatContext): Promise<PreparedSignature>;
}
