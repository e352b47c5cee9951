/**
 * A signing thread (node:worker_threads). pkcs11js' C_SignInit is synchronous: on a network token
 * each one holds its thread for a whole round trip, so signatures in flight on the main thread
 * still start one round trip apart. Each thread here joins the module the main thread opened and
 * opens one session of its own (while the main thread logs in and finds the key: start-up
 * overlaps), then waits for the key, and runs C_SignInit + C_Sign on its session with the
 * mechanism and data the main thread's TokenKeySigner chose (mechanism choice stays there).
 * Login state belongs to the application, so most modules need no login here; a module that
 * opens a connection per initialisation (p11-kit-client) gets one C_Login on this thread's
 * connection, with the PIN the main thread's login has just proved, one thread at a time, and none
 * after a refusal (a lock and a flag in shared memory). The thread closes
 * its session when told to; its C_Finalize only gives back its own initialisation count, and the
 * main thread finalises last. It imports nothing heavy: start-up is part of the batch's time.
 */
import { parentPort, workerData } from "node:worker_threads";
import { CodesignError } from "../errors.js";
import { ckrName } from "./ckr.js";
import { Pkcs11Module, type Session } from "./module.js";
import { Secret, type PinSource } from "./pin.js";
import type { FromWorker, ToWorker, WorkerError, WorkerKey, WorkerSetup } from "./worker-protocol.js";

const port = parentPort;
if (!port) throw new Error("sign-worker.js runs as a worker thread only");
const post = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);

/** A cloned Buffer arrives as a plain Uint8Array; pkcs11js wants Buffers. */
const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

function errorOf(e: unknown): WorkerError {
  const ckr = ckrName(e) ?? (e instanceof Error ? ckrName(e.cause) : undefined);
  const base =
    e instanceof CodesignError
      ? { code: e.code, message: e.message, ...(e.hint === undefined ? {} : { hint: e.hint }) }
      : { code: "INTERNAL" as const, message: e instanceof Error ? e.message : String(e) };
  return ckr === undefined ? base : { ...base, ckr };
}

const setup = workerData as WorkerSetup;
let module: Pkcs11Module | undefined;
let session: Session | undefined;
let wanted: WorkerKey | undefined;
let key: Buffer | undefined;
let ownLogin = false;

/** Before the main thread's login: join the module, open this thread's session, then wait. */
function start(): void {
  module = Pkcs11Module.join(setup.modulePath);
  session = module.openSession({ ...setup.token, handle: buf(setup.token.handle) });
}

let shared = false;
let readyPosted = false;

const lock = new Int32Array(setup.loginLock);
const PIN_ERRORS = new Set(["PIN_INCORRECT", "PIN_LOCKED", "PIN_EXPIRED", "LOGIN_FAILED"]);

/** After the main thread's login: it is this thread's too, or this thread logs in once. */
function afterMainLogin(pin: string | undefined, source: PinSource | undefined): void {
  const s = session;
  if (!s) throw new CodesignError("INTERNAL", "the signing thread has no session");
  if (s.loggedIn()) {
    shared = true;
    maybeReady();
    return;
  }
  if (pin === undefined || source === undefined) {
    throw new CodesignError("LOGIN_FAILED", "a signing thread needs a login, and none is given");
  }
  // One login at a time over all threads; none after a refused one.
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

/** Ready once logged in (either way) and told the key. */
function maybeReady(): void {
  const s = session;
  const k = wanted;
  if (!s || !k || readyPosted || !(shared || ownLogin)) return;
  if (shared) {
    key = buf(k.handle);
  } else {
    // Object handles belong to a connection too: the main thread's key, found again by CKA_ID.
    const lib = s.module.lib;
    const found = s.find(
      [
        { type: lib.CKA_CLASS, value: lib.CKO_PRIVATE_KEY },
        { type: lib.CKA_ID, value: Buffer.from(k.id) },
        ...(k.label === "" ? [] : [{ type: lib.CKA_LABEL, value: k.label }]),
      ],
      2,
    );
    const [handle] = found;
    if (found.length !== 1 || !handle) {
      throw new CodesignError(
        "KEY_NOT_FOUND",
        `a signing thread found ${found.length} keys where the main thread found one`,
      );
    }
    key = handle;
  }
  readyPosted = true;
  post({ kind: "ready", loggedIn: shared ? "shared" : "own" });
}

function shutdown(): void {
  // A connection of this thread's own ends with its C_Finalize, sessions and login with it (two
  // round trips fewer); a joined module's session is closed here, the module left to the main thread.
  if (!module?.owner) {
    if (ownLogin) session?.logout();
    session?.close();
  }
  session = undefined;
  try {
    module?.close();
  } catch {
    // C_Finalize of a module whose server went away: nothing left to release
  }
  module = undefined;
}

function failed(e: unknown): void {
  shutdown();
  post({ kind: "failed", error: errorOf(e) });
}

try {
  start();
} catch (e) {
  failed(e);
}

port.on("message", (m: ToWorker) => {
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
      error: { code: "INTERNAL", message: "the signing thread has no session" },
    });
    return;
  }
  s.signOnce(m.mechanism, k, buf(m.data)).then(
    (signature) => {
      const own = new Uint8Array(signature); // a copy of its own, so its buffer can be handed over
      post({ kind: "signed", id: m.id, signature: own }, [own.buffer]);
    },
    (e: unknown) => post({ kind: "error", id: m.id, error: errorOf(e) }),
  );
});
