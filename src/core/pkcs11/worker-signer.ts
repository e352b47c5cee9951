/**
 * Signing threads (sign-worker.ts) behind TokenKeySigner's SigningSession: TokenKeySigner chooses
 * the mechanism and prepares the data on the main thread as always, and each C_SignInit + C_Sign
 * runs on whichever thread's session is free. Threads start as requests need them, up to
 * `maxThreads`, one session each; a request waits for a free one. Data and signatures cross by
 * postMessage (their buffers are transferred, not copied).
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { CodesignError } from "../errors.js";
import type { Mechanism } from "pkcs11js";
import { loadPkcs11Js, type Pkcs11Js } from "./native.js";
import type { Secret } from "./pin.js";
import type { SigningSession } from "./token-signer.js";
import type { FromWorker, ToWorker, WorkerError, WorkerKey, WorkerSetup } from "./worker-protocol.js";

/** A thread's login failed this way: no other thread is given the PIN (each try counts). */
const PIN_ERRORS = new Set(["PIN_INCORRECT", "PIN_LOCKED", "PIN_EXPIRED", "LOGIN_FAILED"]);

/**
 * The worker entry beside this file (dist/src/core/pkcs11/sign-worker.js, or dist/action/
 * sign-worker.js next to the Action bundle); undefined where there is none (sources run by a
 * TypeScript loader), and signing stays in-process.
 */
export function signWorkerFile(): URL | undefined {
  const url = new URL("./sign-worker.js", import.meta.url);
  return url.protocol === "file:" && existsSync(fileURLToPath(url)) ? url : undefined;
}

/** Turns a thread's error back into ours, the CKR_* name kept as the cause (see transientCkr). */
function errorFrom(e: WorkerError): CodesignError {
  return new CodesignError(e.code, e.message, {
    ...(e.hint === undefined ? {} : { hint: e.hint }),
    ...(e.ckr === undefined ? {} : { cause: new Error(e.ckr) }),
  });
}

interface Thread {
  worker: Worker;
  /** Resolves when the thread can sign; rejects when it cannot start. */
  started: Promise<void>;
  ready: boolean;
  /** Sessions not signing right now. */
  free: number;
  exited: Promise<void>;
}

interface Job {
  mechanism: Mechanism;
  data: Buffer;
  resolve: (s: Buffer) => void;
  reject: (e: unknown) => void;
}

export class SigningThreads implements SigningSession {
  readonly module: { readonly lib: Pkcs11Js } = { lib: loadPkcs11Js() };
  readonly #file: URL;
  readonly #setup: WorkerSetup;
  #maxThreads: number;
  readonly #threads: Thread[] = [];
  /** Every thread not yet ended, ready or still starting: close() ends them all. */
  readonly #all = new Set<Thread>();
  #starting = 0;
  readonly #queue: Job[] = [];
  readonly #jobs = new Map<number, { job: Job; thread: Thread }>();
  #nextId = 0;
  #closed = false;
  /** Why no thread could start, when none did: every waiting request fails with it. */
  #failure: CodesignError | undefined;

  readonly #pin: Secret;
  #key: WorkerKey | undefined;
  #mainLoggedIn = false;
  #pinRefused = false;
  /** Threads that logged in on a connection of their own (see sign-worker.ts). */
  ownLogins = 0;

  constructor(file: URL, setup: Omit<WorkerSetup, "loginLock">, maxThreads: number, pin: Secret) {
    this.#pin = pin;
    this.#file = file;
    this.#setup = { ...setup, loginLock: new SharedArrayBuffer(8) };
    this.#maxThreads = Math.max(1, maxThreads);
  }

  /** Threads signing now (one session each). */
  get threads(): number {
    return this.#threads.length;
  }

  /**
   * Starts `count` threads at once, before the main thread's login: each loads, joins the module
   * and opens its session while the main thread logs in and finds the key.
   */
  boot(count: number): void {
    const n = Math.max(1, Math.min(count, this.#maxThreads)) - this.#all.size;
    for (let i = 0; i < n; i++) this.#spawn().catch(() => undefined); // failures: see #spawn
  }

  /**
   * Hands the key to the threads (and to every thread started later) once the main thread found
   * it; resolves when the first can sign, rejects when none can.
   */
  /** The main thread's login holds: threads that do not share it ask for the PIN now. */
  loggedIn(): void {
    this.#mainLoggedIn = true;
    for (const t of this.#all) t.worker.postMessage(this.#loggedInMessage());
  }

  start(key: WorkerKey): Promise<void> {
    this.#key = key;
    if (!this.#mainLoggedIn) this.loggedIn();
    if (this.#all.size === 0) this.boot(1);
    const all = [...this.#all];
    for (const t of all) t.worker.postMessage({ kind: "key", key } satisfies ToWorker);
    return Promise.any(all.map((t) => t.started)).catch((e: unknown) => {
      throw e instanceof AggregateError ? e.errors[0] : e;
    });
  }

  /** The key handle is the thread's own (the same key, found on its connection when it has one). */
  signOnce(mechanism: Mechanism, _key: Buffer, data: Buffer, authorize?: unknown): Promise<Buffer> {
    if (authorize !== undefined) {
      return Promise.reject(new CodesignError("INTERNAL", "per-signature logins stay on the main thread"));
    }
    if (this.#closed) return Promise.reject(new CodesignError("INTERNAL", "the signing threads were closed"));
    return new Promise((resolve, reject) => {
      this.#queue.push({ mechanism, data, resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const thread = this.#threads.find((t) => t.ready && t.free > 0);
      if (!thread) break;
      const job = this.#queue.shift() as Job;
      const id = this.#nextId++;
      thread.free--;
      this.#jobs.set(id, { job, thread });
      const data = new Uint8Array(job.data); // a copy of its own, so its buffer can be handed over
      const message = { kind: "sign", id, mechanism: job.mechanism, data } satisfies ToWorker;
      thread.worker.postMessage(message, [data.buffer]);
    }
    // More threads while requests wait and the sessions starting would not cover them.
    const total = this.#threads.length + this.#starting;
    const coming = this.#starting;
    if (this.#queue.length > coming && total < this.#maxThreads && !this.#closed) {
      this.#spawn().catch(() => undefined); // a thread that cannot start is handled in #spawn
    }
  }

  #spawn(): Promise<void> {
    this.#starting++;
    const worker = new Worker(this.#file, { workerData: this.#setup });
    let settle: { resolve: () => void; reject: (e: unknown) => void } | undefined;
    const started = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    const thread: Thread = { worker, started, ready: false, free: 0, exited };
    this.#all.add(thread);
    if (this.#mainLoggedIn) worker.postMessage(this.#loggedInMessage());
    if (this.#key) worker.postMessage({ kind: "key", key: this.#key } satisfies ToWorker);
    void exited.then(() => this.#all.delete(thread));
    const fail = (e: CodesignError): void => {
      if (!settle) return;
      this.#starting--;
      settle.reject(e);
      settle = undefined;
      // The token has no room for this thread: plan with the others.
      this.#maxThreads = Math.max(1, this.#all.size - 1);
      if (this.#threads.length === 0) {
        this.#failure = e;
        for (const job of this.#queue.splice(0)) job.reject(e);
      }
      void worker.terminate();
    };
    worker.on("message", (m: FromWorker) => {
      if (m.kind === "ready") {
        if (m.loggedIn === "own") this.ownLogins++;
        if (!settle) return;
        this.#starting--;
        if (this.#closed) {
          // close() already told this thread to end
          settle.resolve();
          settle = undefined;
          return;
        }
        thread.ready = true;
        thread.free = 1;
        this.#threads.push(thread);
        settle.resolve();
        settle = undefined;
        this.#dispatch();
      } else if (m.kind === "failed") {
        if (PIN_ERRORS.has(m.error.code)) this.#pinRefused = true;
        fail(errorFrom(m.error));
      } else if (m.kind === "signed" || m.kind === "error") {
        const entry = this.#jobs.get(m.id);
        if (!entry) return;
        this.#jobs.delete(m.id);
        entry.thread.free++;
        if (m.kind === "signed") {
          const sig = m.signature;
          entry.job.resolve(Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength));
        } else entry.job.reject(errorFrom(m.error));
        this.#dispatch();
      }
    });
    worker.on("error", (e) => {
      const err = new CodesignError("INTERNAL", `a signing thread failed: ${e.message}`, { cause: e });
      fail(err);
      this.#lost(thread, err);
    });
    worker.once("exit", () => this.#lost(thread, new CodesignError("INTERNAL", "a signing thread ended")));
    return started;
  }

  /** The PIN goes along only while no thread's login was refused. */
  #loggedInMessage(): ToWorker {
    if (this.#pinRefused) return { kind: "logged-in" };
    return { kind: "logged-in", pin: this.#pin.reveal(), source: this.#pin.source };
  }

  /** A thread gone: its requests fail (the caller may retry them), the others carry on. */
  #lost(thread: Thread, e: CodesignError): void {
    const i = this.#threads.indexOf(thread);
    if (i >= 0) this.#threads.splice(i, 1);
    thread.ready = false;
    for (const [id, entry] of this.#jobs) {
      if (entry.thread !== thread) continue;
      this.#jobs.delete(id);
      entry.job.reject(e);
    }
    if (this.#threads.length === 0 && this.#starting === 0 && this.#queue.length > 0 && !this.#closed) {
      this.#spawn().catch(() => undefined);
    }
  }

  /**
   * Each thread closes its sessions and ends; one that does not answer within `graceMs` is
   * terminated. Call only when no signature is in flight; the main thread's C_Finalize comes after.
   */
  async close(graceMs = 5_000): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) {
      job.reject(this.#failure ?? new CodesignError("INTERNAL", "the signing threads were closed"));
    }
    this.#threads.splice(0);
    const ending = [...this.#all].map(async (t) => {
      t.worker.postMessage({ kind: "close" } satisfies ToWorker);
      const timer = setTimeout(() => void t.worker.terminate(), graceMs);
      await t.exited;
      clearTimeout(timer);
    });
    await Promise.all(ending);
  }
}
