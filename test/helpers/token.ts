import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { initDevToken, softhsmModulePath, type DevToken } from "../../src/core/pkcs11/dev-token.js";
import { tool } from "./cli.js";

export interface TestToken {
  dir: string;
  dev: DevToken;
  module: string;
  pin: string;
  /** Environment for child processes: SOFTHSM2_CONF and the module, no PIN. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

/** A fresh SoftHSM2 token in a private temp directory (never the user's), made by `dev-token init`. */
export async function createTestToken(): Promise<TestToken> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "codesign-token-"));
  const dev = await initDevToken(path.join(dir, "dev-token"));
  const module = softhsmModulePath();
  const pin = (await readFile(dev.pinFile, "utf8")).trim();
  return {
    dir,
    dev,
    module,
    pin,
    env: { SOFTHSM2_CONF: dev.config, CODESIGN_PKCS11_MODULE: module },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Token labels in the order the module lists its slots, read by pkcs11-tool. */
export async function tokenLabels(t: TestToken): Promise<string[]> {
  const r = await tool("pkcs11-tool", ["--module", t.module, "-L"], { env: t.env });
  if (r.exitCode !== 0) throw new Error(`pkcs11-tool -L failed: ${r.stderr}`);
  return [...r.stdout.matchAll(/token label\s*:\s*(\S+)/g)].map((m) => m[1] ?? "");
}

/**
 * A test token that is NOT in the first slot, so that anything picking "the first slot" finds
 * the wrong token. SoftHSM2 orders slots by an id taken from each token's random serial: four
 * other tokens are added, and when the dev token still comes first (1 time in 5) the whole set is
 * made again. Six attempts fail together about once in 15,600 runs, and then say so.
 */
export async function createTestTokenNotFirst(): Promise<TestToken> {
  for (let attempt = 1; attempt <= 6; attempt++) {
    const t = await createTestToken();
    for (let i = 0; i < 4; i++) {
      const r = await tool(
        "softhsm2-util",
        ["--init-token", "--free", "--label", `other-${i}`, "--so-pin", "12345678", "--pin", "1234"],
        { env: t.env },
      );
      if (r.exitCode !== 0) throw new Error(`softhsm2-util --init-token failed: ${r.stderr}`);
    }
    if ((await tokenLabels(t))[0] !== "codesign-dev") return t;
    await t.cleanup();
  }
  throw new Error("SoftHSM2 listed the dev token first in six fresh token sets");
}

/**
 * Adds a key pair with pkcs11-tool; the PIN goes by environment (`--pin env:VAR`), never argv.
 * `alwaysAuth` sets CKA_ALWAYS_AUTHENTICATE (a PIN per signature, as on PIV cards).
 */
export async function addKeyWithPkcs11Tool(
  t: TestToken,
  keyType: string,
  id: string,
  label: string,
  opts: { alwaysAuth?: boolean } = {},
): Promise<void> {
  const r = await tool(
    "pkcs11-tool",
    [
      "--module",
      t.module,
      "--token-label",
      "codesign-dev",
      "--login",
      "--pin",
      "env:TEST_PIN",
      "--keypairgen",
      "--key-type",
      keyType,
      "--id",
      id,
      "--label",
      label,
      ...(opts.alwaysAuth ? ["--always-auth"] : []),
    ],
    { env: { ...t.env, TEST_PIN: t.pin } },
  );
  if (r.exitCode !== 0) throw new Error(`pkcs11-tool keypairgen ${keyType} failed: ${r.stderr}`);
}

/**
 * The public key as PEM, read by an independent tool: pkcs11-tool (converted by openssl), or
 * GnuTLS p11tool where pkcs11-tool 0.23 falls short (it fails on P-384 points and writes
 * Ed25519 keys in a form openssl cannot read).
 */
export async function publicKeyPem(t: TestToken, id: string): Promise<string> {
  const der = path.join(t.dir, `pub-${id}.der`);
  const pem = path.join(t.dir, `pub-${id}.pem`);
  const r = await tool(
    "pkcs11-tool",
    [
      "--module",
      t.module,
      "--token-label",
      "codesign-dev",
      "--read-object",
      "--type",
      "pubkey",
      "--id",
      id,
      "-o",
      der,
    ],
    { env: t.env },
  );
  if (r.exitCode === 0) {
    const c = await tool("openssl", ["pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem]);
    if (c.exitCode === 0) return pem;
  }
  const g = await tool(
    "p11tool",
    [
      "--provider",
      t.module,
      "--batch",
      "--login",
      "--outfile",
      pem,
      "--export-pubkey",
      `pkcs11:token=codesign-dev;id=%${id}`,
    ],
    { env: { ...t.env, GNUTLS_PIN: t.pin } },
  );
  if (g.exitCode !== 0) throw new Error(`p11tool --export-pubkey id ${id} failed: ${g.stderr}`);
  return pem;
}

export const PKCS11_SPY = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";

export interface LoginCounts {
  user: number;
  context: number;
  so: number;
  /** Calls that returned a PIN error (only C_Login returns those). */
  failed: number;
}

/**
 * Counts C_Login calls in a pkcs11-spy log, line by line: C_SignAsync runs on pkcs11js' worker
 * threads, so the spy's multi-line call blocks can interleave, but each `N: C_Login` header and
 * `[in] userType = CKU_…` line is written whole.
 */
export function countLogins(spyLog: string): LoginCounts {
  const n = (re: RegExp) => spyLog.match(re)?.length ?? 0;
  const counts: LoginCounts = {
    user: n(/^\[in\] userType = CKU_USER\s*$/gm),
    context: n(/^\[in\] userType = CKU_CONTEXT_SPECIFIC\s*$/gm),
    so: n(/^\[in\] userType = CKU_SO\s*$/gm),
    failed: n(/^Returned:\s+\d+ CKR_PIN_\w+/gm),
  };
  const calls = n(/^\d+: C_Login\s*$/gm);
  if (calls !== counts.user + counts.context + counts.so) {
    throw new Error(`the spy log has ${calls} C_Login calls but ${JSON.stringify(counts)} user types`);
  }
  return counts;
}

/** `n` small files under `<root>/<name>-in`, their list in `<root>/<name>.list`, and an output dir to use. */
export async function makeBatchFiles(
  root: string,
  name: string,
  n: number,
  ext = ".bin",
): Promise<{ list: string; out: string; files: string[] }> {
  const dir = path.join(root, `${name}-in`);
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const f = path.join(dir, `f${i}${ext}`);
    await writeFile(f, `file ${i} of ${name}\n`);
    files.push(f);
  }
  const list = path.join(root, `${name}.list`);
  await writeFile(list, files.join("\n"));
  return { list, out: path.join(root, `${name}-out`), files };
}
