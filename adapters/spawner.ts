/**
 * A small helper process that starts tool processes during a batch. Starting a process from
 * codesign's own — 100+ MiB with pkcs11js, pkijs and the token's module loaded — forks all of it
 * on the main thread: measured at 5–8 ms a process, the largest cost of an Authenticode batch
 * (two tool runs a file). A bare Node process forks in about 1 ms, and does it beside the main
 * thread. The helper runs argument arrays, never a shell, and only for runs without a PIN: a
 * tool that must log in itself is always started directly (adapters/run.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";

/** The helper's code, run with `node -e` so it works from dist/ and from the Action's one-file bundle alike. */
const HELPER = `
const { spawn } = require("node:child_process");
const LIMIT = 1 << 20;
const running = new Map();
process.on("message", (m) => {
  if (m.kill) { running.get(m.id)?.kill("SIGTERM"); return; }
  const out = [], err = [];
  let size = 0;
  let child;
  try {
    child = spawn(m.file, m.args, { env: m.env, cwd: m.cwd, stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    process.send({ id: m.id, error: e.code || String(e) });
    return;
  }
  running.set(m.id, child);
  const keep = (list) => (d) => { if (size < LIMIT) { list.push(d); size += d.length; } };
  child.stdout.on("data", keep(out));
  child.stderr.on("data", keep(err));
  child.on("error", (e) => {
    if (running.delete(m.id)) process.send({ id: m.id, error: e.code || e.message });
  });
  child.on("close", (exitCode, signal) => {
    if (!running.delete(m.id)) return;
    process.send({ id: m.id, exitCode, signal, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
  });
});
process.on("disconnect", () => {
  // codesign is gone (finished, or stopped by a signal): so are the tools it asked for.
  for (const child of running.values()) child.kill("SIGTERM");
  process.exit(0);
});
`;

export interface SpawnRequest {
  file: string;
  args: readonly string[];
  env: Record<string, string>;
  cwd?: string | undefined;
}

export interface SpawnReply {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** The errno code when the program could not be started (ENOENT…). */
  error?: string;
}

type Pending = { resolve: (r: SpawnReply) => void; reject: (e: Error) => void };

class Spawner {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private next = 1;

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, ["--max-old-space-size=64", "-e", HELPER], {
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      env,
    });
    this.child.on("message", (m: SpawnReply & { id: number }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      this.idle();
      p.resolve(m);
    });
    this.child.on("exit", () => {
      if (spawner === this) spawner = undefined;
      for (const p of this.pending.values()) p.reject(new Error("the process starter exited"));
      this.pending.clear();
    });
    this.child.on("error", () => undefined); // reported through "exit"
    this.idle();
  }

  /** The helper keeps codesign alive only while a tool it started is running. */
  private idle(): void {
    if (this.pending.size === 0) {
      this.child.unref();
      this.child.channel?.unref();
    }
  }

  run(request: SpawnRequest, signal?: AbortSignal): Promise<SpawnReply> {
    const id = this.next++;
    this.child.ref();
    this.child.channel?.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, ...request }, (e) => {
        if (!e) return;
        this.pending.delete(id);
        this.idle();
        reject(e);
      });
      signal?.addEventListener("abort", () => this.child.send({ id, kill: true }), { once: true });
    });
  }
}

let spawner: Spawner | undefined;
let started = 0;

/** Runs through the helper once a run has started a few tools: a single file never pays for it. */
export function viaSpawner(env: Record<string, string>): Spawner | undefined {
  if (process.env["CODESIGN_DIRECT_SPAWN"] === "1") return undefined;
  if (++started <= 6) return undefined;
  spawner ??= new Spawner(env);
  return spawner;
}
