/**
 * Private temporary files that never outlive the process: a 0700 directory per use, removed when
 * the caller is done, at exit, and on SIGINT/SIGTERM/SIGHUP (then the process exits with 128+n).
 * Used for exported certificates, generated tool configs and the rare PIN file a tool insists on.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

const live = new Set<string>();
let hooked = false;

function removeAllSync(): void {
  for (const p of live) rmSync(p, { recursive: true, force: true });
  live.clear();
}

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", removeAllSync);
  for (const [signal, n] of Object.entries(SIGNALS)) {
    process.once(signal, () => {
      removeAllSync();
      process.exit(128 + n);
    });
  }
}

/** Registers a path (file or directory) for removal at exit or on a signal. */
export function removeOnExit(p: string): () => void {
  hook();
  live.add(p);
  return () => live.delete(p);
}

export interface PrivateDir {
  path: string;
  /** Removes the directory now; harmless to call twice. */
  remove(): Promise<void>;
}

/** A fresh 0700 directory under the system temp dir, gone at exit even on a signal. */
export function privateTempDir(prefix = "codesign-"): PrivateDir {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix)); // mkdtemp creates it 0700
  const forget = removeOnExit(dir);
  return {
    path: dir,
    async remove() {
      forget();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `fn` with a private temp dir and removes the dir however `fn` ends. */
export async function withPrivateDir<T>(fn: (dir: string) => Promise<T>, prefix?: string): Promise<T> {
  const d = privateTempDir(prefix);
  try {
    return await fn(d.path);
  } finally {
    await d.remove();
  }
}
