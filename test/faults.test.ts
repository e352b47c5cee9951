/**
 * Token faults and interruptions, on a real SoftHSM2 token: a locked or expired PIN, two
 * processes signing on one token at once, and a batch killed by SIGINT or SIGTERM half-way.
 * (A wrong PIN with its single C_Login is in sign.test.ts; a token server killed mid-batch in
 * remote.test.ts.)
 */
import { execa } from "execa";
import { mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromPkcs11Error } from "../src/core/pkcs11/ckr.js";
import { exitCodeFor } from "../src/cli/exit-codes.js";
import { BIN, codesign, tool } from "./helpers/cli.js";
import { createTestToken, publicKeyPem, type TestToken } from "./helpers/token.js";

let t: TestToken;
let ecPub: string;
const KEY = "pkcs11:token=codesign-dev;object=ec-p256;type=private";

beforeAll(async () => {
  t = await createTestToken();
  ecPub = await publicKeyPem(t, "02");
});

afterAll(async () => {
  await t?.cleanup();
});

async function makeFiles(dir: string, n: number): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const f = path.join(dir, `f${String(i).padStart(5, "0")}.bin`);
    await writeFile(f, `payload ${i}\n`);
    files.push(f);
  }
  return files;
}

async function verifies(file: string, sig: string): Promise<boolean> {
  const r = await tool("openssl", ["dgst", "-sha256", "-verify", ecPub, "-signature", sig, file]);
  return r.stdout.includes("Verified OK");
}

describe("PIN states the token reports", () => {
  // SoftHSM2 never locks or expires a PIN, so these feed the module's own error words through
  // the same mapping a real token's C_Login failure takes.
  const fake = (name: string) => Object.assign(new Error(name), { code: 0 });

  it("CKR_PIN_LOCKED: its own message, exit 3, the security officer named", () => {
    const e = fromPkcs11Error(fake("CKR_PIN_LOCKED"), "C_Login");
    expect(e.code).toBe("PIN_LOCKED");
    expect(e.message).toMatch(/locked/);
    expect(e.hint).toMatch(/security officer/);
    expect(exitCodeFor(e.code)).toBe(3);
  });

  it("CKR_PIN_EXPIRED: its own message, exit 3, how to set a new PIN", () => {
    const e = fromPkcs11Error(fake("CKR_PIN_EXPIRED"), "C_Login");
    expect(e.code).toBe("PIN_EXPIRED");
    expect(e.message).toMatch(/expired/);
    expect(e.hint).toMatch(/new PIN/);
    expect(exitCodeFor(e.code)).toBe(3);
  });
});

describe("concurrency and interruption", () => {
  it("two codesign processes signing on the same token at once both succeed", async () => {
    const a = await makeFiles(path.join(t.dir, "two-a"), 60);
    const b = await makeFiles(path.join(t.dir, "two-b"), 60);
    const args = (files: string[]) => [
      "sign",
      "--tool",
      "raw",
      "--key",
      KEY,
      "--pin-file",
      t.dev.pinFile,
      ...files,
    ];
    const [ra, rb] = await Promise.all([
      codesign(args(a), { env: t.env }),
      codesign(args(b), { env: t.env }),
    ]);
    expect(ra.exitCode, ra.stderr).toBe(0);
    expect(rb.exitCode, rb.stderr).toBe(0);
    for (const f of [...a, ...b]) expect(await verifies(f, `${f}.sig`), f).toBe(true);
  });

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} in the middle of a batch: finished files valid, nothing partial, no temp dirs left`, async () => {
      const files = await makeFiles(path.join(t.dir, `kill-${signal}`), 4000);
      const out = path.join(t.dir, `kill-${signal}-out`);
      const tmp = await mkdtemp(path.join(t.dir, "tmpdir-"));
      const child = execa(
        "node",
        [BIN, "sign", "--tool", "raw", "--key", KEY, "--pin-file", t.dev.pinFile, "--out-dir", out, ...files],
        { env: { ...t.env, TMPDIR: tmp, NO_COLOR: "1" }, reject: false, stdin: "ignore" },
      );
      // Wait until signatures are being written, then interrupt.
      for (let i = 0; i < 200; i++) {
        const done = await readdir(out).catch(() => []);
        if (done.length >= 50) break;
        await sleep(25);
      }
      child.kill(signal);
      const r = await child;
      expect(r.exitCode).not.toBe(0);
      const written = await readdir(out);
      expect(written.filter((n) => n.endsWith(".tmp"))).toEqual([]);
      const sigs = written.filter((n) => n.endsWith(".sig"));
      expect(sigs.length).toBeGreaterThan(0);
      expect(sigs.length, "the batch was not interrupted").toBeLessThan(files.length);
      for (const s of sigs.slice(0, 20)) {
        const input = path.join(path.dirname(files[0] ?? ""), s.slice(0, -".sig".length));
        expect(await verifies(input, path.join(out, s)), s).toBe(true);
      }
      expect(await readdir(tmp)).toEqual([]);
    });
  }
});
