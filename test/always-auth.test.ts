/**
 * Keys with CKA_ALWAYS_AUTHENTICATE (PIV/YubiKey style) on a real SoftHSM2 token, which enforces
 * it: one C_Login(CKU_USER) per run, then C_SignInit → C_Login(CKU_CONTEXT_SPECIFIC) → C_Sign per
 * signature. pkcs11-spy sits between codesign and SoftHSM2 and counts the logins.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CodesignError } from "../src/core/errors.js";
import { findPrivateKey } from "../src/core/pkcs11/keys.js";
import { LoginFuse } from "../src/core/pkcs11/login-fuse.js";
import { Pkcs11Module, type Session } from "../src/core/pkcs11/module.js";
import { Secret } from "../src/core/pkcs11/pin.js";
import { SignerPool } from "../src/core/pkcs11/signer-pool.js";
import { TokenKeySigner } from "../src/core/pkcs11/token-signer.js";
import { parseUri } from "../src/core/pkcs11/uri.js";
import { codesign } from "./helpers/cli.js";
import {
  addKeyWithPkcs11Tool,
  countLogins,
  createTestToken,
  PKCS11_SPY,
  publicKeyPem,
  type TestToken,
} from "./helpers/token.js";
import { opensslCmsVerify, opensslDgstVerify } from "./helpers/verifiers.js";

let t: TestToken;
const RSA = "pkcs11:token=codesign-dev;object=aa-rsa;type=private";
const EC = "pkcs11:token=codesign-dev;object=aa-ec;type=private";
const pems: Record<string, string> = {};
const certs: Record<string, string> = {};
let spyCount = 0;

/** Environment that puts pkcs11-spy in front of SoftHSM2, with a fresh log per run. */
function spyEnv(): { env: Record<string, string>; log: string } {
  const log = path.join(t.dir, `spy-${++spyCount}.log`);
  return {
    log,
    env: {
      ...t.env,
      CODESIGN_PIN: t.pin,
      CODESIGN_PKCS11_MODULE: PKCS11_SPY,
      PKCS11SPY: t.module,
      PKCS11SPY_OUTPUT: log,
    },
  };
}

beforeAll(async () => {
  t = await createTestToken();
  await addKeyWithPkcs11Tool(t, "rsa:2048", "a1", "aa-rsa", { alwaysAuth: true });
  await addKeyWithPkcs11Tool(t, "EC:prime256v1", "a2", "aa-ec", { alwaysAuth: true });
  pems["rsa"] = await publicKeyPem(t, "a1");
  pems["ec"] = await publicKeyPem(t, "a2");
  for (const [name, key] of [
    ["rsa", RSA],
    ["ec", EC],
  ] as const) {
    certs[name] = path.join(t.dir, `${name}-cert.pem`);
    const r = await codesign(
      ["cert", "selfsign", "--key", key, "--subject", `CN=Always ${name}`, "--out", certs[name]],
      { env: { ...t.env, CODESIGN_PIN: t.pin } },
    );
    expect(r.exitCode, r.stderr).toBe(0);
  }
}, 60_000);

afterAll(async () => {
  await t?.cleanup();
});

describe("always-authenticate keys through the CLI", () => {
  it("`keys --json` shows alwaysAuthenticate", async () => {
    const r = await codesign(["keys", "--json"], { env: { ...t.env, CODESIGN_PIN: t.pin } });
    expect(r.exitCode, r.stderr).toBe(0);
    const keys = (JSON.parse(r.stdout) as { keys: Array<{ label: string; alwaysAuthenticate: boolean }> })
      .keys;
    const by = new Map(keys.map((k) => [k.label, k.alwaysAuthenticate]));
    expect(by.get("aa-rsa")).toBe(true);
    expect(by.get("aa-ec")).toBe(true);
    expect(by.get("rsa-2048")).toBe(false);
  });

  for (const [name, key] of [
    ["rsa", RSA],
    ["ec", EC],
  ] as const) {
    it(`${name}: raw and CMS signatures verify with openssl; one user login, one context login each`, async () => {
      const file = path.join(t.dir, `${name}.txt`);
      await writeFile(file, `always-authenticate ${name}\n`);
      const raw = spyEnv();
      const r = await codesign(["sign", "--tool", "raw", "--key", key, file], { env: raw.env });
      expect(r.exitCode, r.stderr).toBe(0);
      await opensslDgstVerify(pems[name] ?? "", file, `${file}.sig`);
      expect(countLogins(await readFile(raw.log, "utf8"))).toEqual({ user: 1, context: 1, so: 0, failed: 0 });

      const cms = spyEnv();
      const c = await codesign(["sign", "--tool", "cms", "--key", key, "--cert", certs[name] ?? "", file], {
        env: cms.env,
      });
      expect(c.exitCode, c.stderr).toBe(0);
      await opensslCmsVerify(`${file}.p7s`, certs[name] ?? "", { content: file });
      expect(countLogins(await readFile(cms.log, "utf8"))).toEqual({ user: 1, context: 1, so: 0, failed: 0 });
    });
  }

  it("a raw batch of 20 files with --jobs 4: 1 user login, 20 context logins, 20 verified signatures", async () => {
    const dir = path.join(t.dir, "batch");
    const out = path.join(t.dir, "batch-out");
    await mkdir(dir, { recursive: true });
    const files: string[] = [];
    for (let i = 0; i < 20; i++) {
      const f = path.join(dir, `f${i}.bin`);
      await writeFile(f, `file ${i}\n`);
      files.push(f);
    }
    const spy = spyEnv();
    const r = await codesign(
      ["sign", "--tool", "raw", "--key", RSA, "--jobs", "4", "--out-dir", out, ...files],
      {
        env: spy.env,
      },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of files)
      await opensslDgstVerify(pems["rsa"] ?? "", f, path.join(out, `${path.basename(f)}.sig`));
    expect(countLogins(await readFile(spy.log, "utf8"))).toEqual({ user: 1, context: 20, so: 0, failed: 0 });
  });

  it("a wrong PIN fails the one user login and nothing else is tried", async () => {
    const files = [];
    for (let i = 0; i < 20; i++) {
      const f = path.join(t.dir, `w${i}.bin`);
      await writeFile(f, `w ${i}\n`);
      files.push(f);
    }
    const spy = spyEnv();
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        RSA,
        "--jobs",
        "4",
        "--out-dir",
        path.join(t.dir, "w-out"),
        ...files,
      ],
      { env: { ...spy.env, CODESIGN_PIN: "9999" } },
    );
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/CKR_PIN_INCORRECT/);
    expect(countLogins(await readFile(spy.log, "utf8"))).toEqual({ user: 1, context: 0, so: 0, failed: 1 });
  });

  it("doctor makes its test signature with an always-authenticate key and says so", async () => {
    const r = await codesign(["doctor", "--json", "--key", EC], { env: { ...t.env, CODESIGN_PIN: t.pin } });
    const report = JSON.parse(r.stdout) as {
      checks: Array<{ name: string; ok: boolean; detail: string }>;
      key?: { alwaysAuthenticate: boolean };
    };
    expect(report.key?.alwaysAuthenticate).toBe(true);
    const check = (n: string) => report.checks.find((c) => c.name === n);
    expect(check("test signature")?.ok, JSON.stringify(report.checks)).toBe(true);
    expect(check("always-authenticate")?.detail).toMatch(/^yes/);
  });
});

/**
 * A context login that fails after the user login succeeded cannot be produced through the CLI
 * on SoftHSM2 (the same PIN serves both), so this drives the real signers on real sessions with
 * the right PIN for CKU_USER and a wrong one for CKU_CONTEXT_SPECIFIC, spy in between.
 */
describe("the fuse: a rejected context login is never retried", () => {
  const saved = { ...process.env };
  let m: Pkcs11Module;
  let sessions: Session[];
  let log: string;

  beforeAll(() => {
    log = path.join(t.dir, "spy-fuse.log");
    Object.assign(process.env, { ...t.env, PKCS11SPY: t.module, PKCS11SPY_OUTPUT: log });
    m = Pkcs11Module.open(PKCS11_SPY);
    const token = m.selectToken(parseUri("pkcs11:token=codesign-dev"));
    sessions = [0, 1, 2, 3].map(() => m.openSession(token));
    sessions[0]?.login(new Secret(t.pin, "CODESIGN_PIN"));
  });

  afterAll(async () => {
    for (const s of sessions ?? []) s.close();
    m?.close();
    process.env = saved;
    await rm(log, { force: true });
  });

  async function contextLoginsDuring(fn: () => Promise<void>): Promise<ReturnType<typeof countLogins>> {
    const before = countLogins(await readFile(log, "utf8"));
    await fn();
    const after = countLogins(await readFile(log, "utf8"));
    return {
      user: after.user - before.user,
      context: after.context - before.context,
      so: after.so - before.so,
      failed: after.failed - before.failed,
    };
  }

  function pool(pin: string, shared: boolean): SignerPool {
    const table = m.mechanisms(sessions[0]!.token);
    const key = findPrivateKey(sessions[0]!, table, parseUri(RSA));
    const fuse = new LoginFuse();
    return new SignerPool(
      sessions.map(
        (s) =>
          new TokenKeySigner(s, key, table, {
            pin: new Secret(pin, "CODESIGN_PIN"),
            fuse: shared ? fuse : new LoginFuse(),
          }),
      ),
    );
  }

  const request = { hash: "sha256", scheme: "rsa-pkcs1", input: { digest: new Uint8Array(32) } } as const;

  it("20 concurrent signatures over 4 sessions with a wrong PIN burn exactly one attempt", async () => {
    const signer = pool("0000", true);
    let results: PromiseSettledResult<Uint8Array>[] = [];
    const counts = await contextLoginsDuring(async () => {
      results = await Promise.allSettled(Array.from({ length: 20 }, () => signer.sign(request)));
    });
    expect(counts).toEqual({ user: 0, context: 1, so: 0, failed: 1 });
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    for (const r of results) {
      const e = (r as PromiseRejectedResult).reason as unknown;
      expect(e).toBeInstanceOf(CodesignError);
      expect((e as CodesignError).code).toBe("PIN_INCORRECT");
    }
  });

  it("control: signers that do not share a fuse each burn an attempt (so the count above can fail)", async () => {
    const signer = pool("0000", false);
    const counts = await contextLoginsDuring(async () => {
      await Promise.allSettled(Array.from({ length: 8 }, () => signer.sign(request)));
    });
    expect(counts.context).toBeGreaterThan(1);
  });

  it("after a rejected context login the sessions still sign with the right PIN", async () => {
    const signer = pool(t.pin, true);
    const counts = await contextLoginsDuring(async () => {
      const sigs = await Promise.all(Array.from({ length: 8 }, () => signer.sign(request)));
      expect(sigs.every((s) => s.length === 256)).toBe(true);
    });
    expect(counts).toEqual({ user: 0, context: 8, so: 0, failed: 0 });
  });
});
