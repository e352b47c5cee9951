/**
 * What the main thread and a signing thread (sign-worker.ts) say to each other. Everything here
 * survives structured cloning: Buffers arrive as Uint8Arrays and are turned back by the receiver.
 */
import type { Mechanism } from "pkcs11js";
import type { ErrorCode } from "../errors.js";
import type { KeyInfo } from "./keys.js";
import type { TokenEntry } from "./module.js";
import type { PinSource } from "./pin.js";

/** What a thread needs to start: it joins the module and opens its session before the login. */
export interface WorkerSetup {
  modulePath: string;
  token: TokenEntry;
  /**
   * Shared by all threads of a connection: [0] a lock held around each thread's C_Login (logins
   * go one at a time: SoftHSM2 behind p11-kit fails logins that arrive together), [1] set once a
   * thread's login was refused for its PIN, after which no thread tries.
   */
  loginLock: SharedArrayBuffer;
}

/** The key the main thread found, sent once its login holds. */
export type WorkerKey = Pick<KeyInfo, "id" | "label"> & { handle: Buffer };

export type ToWorker =
  /**
   * The main thread's login holds: see whether it is this thread's too; if not, log in once with
   * this PIN (the one the token just accepted; absent once a thread's login was refused).
   */
  | { kind: "logged-in"; pin?: string; source?: PinSource }
  /** The key the main thread found: sign with it once logged in. */
  | { kind: "key"; key: WorkerKey }
  /** C_SignInit + C_Sign with what TokenKeySigner chose, on this thread's session and key handle. */
  | { kind: "sign"; id: number; mechanism: Mechanism; data: Uint8Array }
  | { kind: "close" };

export interface WorkerError {
  code: ErrorCode;
  message: string;
  hint?: string;
  /** The CKR_* name behind the error, so the main thread sees transient faults as such. */
  ckr?: string;
}

export type FromWorker =
  | { kind: "ready"; loggedIn: "shared" | "own" }
  | { kind: "failed"; error: WorkerError }
  | { kind: "signed"; id: number; signature: Uint8Array }
  | { kind: "error"; id: number; error: WorkerError }
  | { kind: "closed" };
