/**
 * A real opencryptoki soft token (slot 3) for tests. opencryptoki keeps its store machine-wide
 * (/var/lib/opencryptoki/swtok) and needs the pkcsslotd daemon, so the fixture refuses to touch a
 * store someone else initialised or a daemon it did not start, starts its own pkcsslotd, and on
 * cleanup stops it by PID and deletes every file and directory that was not there before.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { tool } from "./cli.js";

export const OPENCRYPTOKI_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so";
const STORE = "/var/lib/opencryptoki/swtok";
const PID_FILE = "/var/run/pkcsslotd.pid";
/** Everything opencryptoki writes for slot 3 and its daemon, apart from /dev/shm (below). */
const STATE_ROOTS = [STORE, "/var/lock/opencryptoki", PID_FILE, "/var/run/pkcsslotd.socket"];
const SHM_PREFIX = "var.lib.opencryptoki.";
const SLOT = "3";
const FACTORY_SO_PIN = "87654321";

export interface OpencryptokiToken {
  label: string;
  pin: string;
  module: string;
  dir: string;
  cleanup(): Promise<void>;
}

function walk(p: string, out: Set<string>): void {
  if (!existsSync(p)) return;
  out.add(p);
  if (statSync(p).isDirectory()) for (const e of readdirSync(p)) walk(path.join(p, e), out);
}

function snapshot(): Set<string> {
  const out = new Set<string>();
  for (const root of STATE_ROOTS) walk(root, out);
  for (const e of readdirSync("/dev/shm")) if (e.startsWith(SHM_PREFIX)) out.add(path.join("/dev/shm", e));
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function run(
  file: string,
  args: string[],
  env: Record<string, string> = {},
  input?: string,
): Promise<void> {
  const r = await tool(file, args, {
    env,
    ...(input === undefined ? {} : { input, stdin: "pipe" as const }),
  });
  if (r.exitCode !== 0)
    throw new Error(`${file} ${args[0] ?? ""} failed (${r.exitCode}): ${r.stderr}${r.stdout}`);
}

/**
 * Starts pkcsslotd, initialises the soft token with a label and fresh PINs (the SO PIN leaves
 * the factory value, the user PIN is changed once as opencryptoki demands) and adds an RSA-2048
 * key (this opencryptoki's soft token has no EC key generation).
 */
export async function startOpencryptoki(label = "ock-test"): Promise<OpencryptokiToken> {
  if (!existsSync(OPENCRYPTOKI_MODULE) || !existsSync("/usr/sbin/pkcsslotd")) {
    throw new Error("opencryptoki is not installed (scripts/debian-packages.txt lists it)");
  }
  if (existsSync(path.join(STORE, "NVTOK.DAT"))) {
    throw new Error(`${STORE} already holds a token: not ours to overwrite`);
  }
  if (existsSync(PID_FILE) && alive(Number(readFileSync(PID_FILE, "utf8").trim()))) {
    throw new Error("pkcsslotd is already running: not ours to stop");
  }
  const before = snapshot();
  const dir = await mkdtemp(path.join(os.tmpdir(), "codesign-ock-"));
  let pid: number | undefined;
  const cleanup = async (): Promise<void> => {
    if (pid !== undefined && alive(pid)) {
      process.kill(pid, "SIGTERM");
      const stopped = pid;
      await waitUntil("pkcsslotd to stop", () => !alive(stopped)).catch(() =>
        process.kill(stopped, "SIGKILL"),
      );
    }
    // Deepest first, so directories are empty when their turn comes.
    const added = [...snapshot()].filter((p) => !before.has(p)).sort((a, b) => b.length - a.length);
    for (const p of added) rmSync(p, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // pkcsslotd forks into the background and writes its PID file; the parent exits at once.
    await run("/usr/sbin/pkcsslotd", []);
    await waitUntil("pkcsslotd's PID file", () => existsSync(PID_FILE));
    pid = Number(readFileSync(PID_FILE, "utf8").trim());
    const so = "5" + String(Math.floor(Math.random() * 1e7)).padStart(7, "0");
    const initialUserPin = "7531";
    const pin = String(1000 + Math.floor(Math.random() * 9000));
    await run("pkcsconf", ["-I", "-c", SLOT, "-S", FACTORY_SO_PIN], {}, `${label}\n`);
    await run("pkcsconf", ["-P", "-c", SLOT, "-S", FACTORY_SO_PIN, "-n", so]);
    await run("pkcsconf", ["-u", "-c", SLOT, "-S", so, "-n", initialUserPin]);
    await run("pkcsconf", ["-p", "-c", SLOT, "-U", initialUserPin, "-n", pin]);
    await run(
      "pkcs11-tool",
      [
        "--module",
        OPENCRYPTOKI_MODULE,
        "--token-label",
        label,
        "--login",
        "--pin",
        "env:TEST_PIN",
        "--keypairgen",
        "--key-type",
        "rsa:2048",
        "--id",
        "01",
        "--label",
        "ock-rsa",
      ],
      { TEST_PIN: pin },
    );
    return { label, pin, module: OPENCRYPTOKI_MODULE, dir, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
