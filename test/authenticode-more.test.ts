/**
 * Authenticode beyond the first signature, and dry runs: an already signed file is refused
 * (exit 2, naming --nest and --replace), nested into (sha256, then sha384 with another key, each
 * numbered), replaced or skipped; a detached signature leaves its file byte-identical and
 * `codesign attach` puts it in without a token. Every result is read by `osslsigncode verify`.
 * Dry runs sign and write nothing, and pkcs11-spy shows that without --login nobody logs in.
 */
import * as asn1js from "asn1js";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import * as pkijs from "pkijs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign, tool } from "./helpers/cli.js";
import { countLogins, createTestToken, PKCS11_SPY, type TestToken } from "./helpers/token.js";
import { closedPortUrl, startTsa, type Tsa } from "./helpers/tsa.js";
import { osslsigncodeVerify } from "./helpers/verifiers.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
let t: TestToken;
let dir: string;
let rsaCert: string;
let ecCert: string;
/** Both dev certificates, the CA file for files signed by both keys. */
let bothCerts: string;
let exe: string;
let ps1: string;
/** exe and ps1 signed once (RSA, sha256). */
let signedExe: string;
let signedPs1: string;
let tsa: Tsa;

async function must(file: string, args: string[], cwd?: string): Promise<void> {
  const r = await tool(file, args, { env: t.env, ...(cwd ? { cwd } : {}) });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(" ")}: ${r.stderr}`);
}

const withPin = (): Record<string, string> => ({ ...t.env, CODESIGN_PIN: t.pin });
const sha256 = async (f: string): Promise<string> =>
  createHash("sha256")
    .update(await readFile(f))
    .digest("hex");

/** Environment with pkcs11-spy in front of SoftHSM2 and a fresh log (PIN in the environment). */
function spied(name: string): { env: Record<string, string>; log: string } {
  const log = path.join(t.dir, `${name}.spy.log`);
  return {
    log,
    env: { ...withPin(), CODESIGN_PKCS11_MODULE: PKCS11_SPY, PKCS11SPY: t.module, PKCS11SPY_OUTPUT: log },
  };
}
const spyLog = async (log: string): Promise<string> => (existsSync(log) ? readFile(log, "utf8") : "");

/** `osslsigncode verify` output for a file, with the given CA file. */
async function verifyText(file: string, ca: string): Promise<string> {
  const r = await tool("osslsigncode", ["verify", "-CAfile", ca, "-in", file]);
  return `${r.stdout}\n${r.stderr}`;
}

/** The signed attributes' sequence numbers of a file's nested signatures, read with pkijs. */
async function nestedSequenceNumbers(file: string): Promise<number[]> {
  const out = path.join(t.dir, `${path.basename(file)}.${Date.now()}.sig.p7`);
  await must("osslsigncode", ["extract-signature", "-in", file, "-out", out]);
  const der = new Uint8Array(await readFile(out));
  const signed = new pkijs.SignedData({ schema: pkijs.ContentInfo.fromBER(der.slice().buffer).content });
  const nested = signed.signerInfos[0]?.unsignedAttrs?.attributes.find(
    (a) => a.type === "1.3.6.1.4.1.311.2.4.1",
  );
  return (nested?.values ?? []).map((v: asn1js.BaseBlock) => {
    const inner = new pkijs.SignedData({
      schema: pkijs.ContentInfo.fromBER(new Uint8Array(v.toBER()).slice().buffer).content,
    });
    const seq = inner.signerInfos[0]?.signedAttrs?.attributes.find(
      (a) => a.type === "1.2.840.113549.1.9.25.4",
    );
    return (seq?.values[0] as asn1js.Integer | undefined)?.valueBlock.valueDec ?? 0;
  });
}

beforeAll(async () => {
  t = await createTestToken();
  dir = path.join(t.dir, "in");
  await mkdir(dir);
  rsaCert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
  bothCerts = path.join(t.dir, "both.pem");
  await writeFile(bothCerts, `${await readFile(rsaCert, "utf8")}\n${await readFile(ecCert, "utf8")}`);
  await writeFile(path.join(dir, "min.s"), ".globl _start\n_start:\n  ret\n");
  await must("x86_64-w64-mingw32-as", ["min.s", "-o", "min.o"], dir);
  exe = path.join(dir, "app.exe");
  await must("x86_64-w64-mingw32-ld", ["--subsystem", "console", "-e", "_start", "min.o", "-o", exe], dir);
  ps1 = path.join(dir, "script.ps1");
  await writeFile(ps1, 'Write-Output "more"\r\n');
  signedExe = path.join(dir, "signed.exe");
  signedPs1 = path.join(dir, "signed.ps1");
  for (const [input, out] of [
    [exe, signedExe],
    [ps1, signedPs1],
  ] as const) {
    const r = await codesign(["sign", "--key", RSA, "--in", input, "--out", out], { env: withPin() });
    if (r.exitCode !== 0) throw new Error(r.stderr);
  }
  tsa = await startTsa("good");
}, 120_000);

afterAll(async () => {
  await tsa?.close();
  await t?.cleanup();
});

describe("a file that is already signed", () => {
  it("is refused with exit 2 naming --nest and --replace, before any login, and nothing is written", async () => {
    const spy = spied("refuse");
    const out = path.join(t.dir, "refused.exe");
    const r = await codesign(["sign", "--key", RSA, "--in", signedExe, "--out", out], { env: spy.env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("already signed");
    expect(r.stderr).toContain("--nest");
    expect(r.stderr).toContain("--replace");
    expect(existsSync(out)).toBe(false);
    expect(countLogins(await spyLog(spy.log)).user).toBe(0);
  });

  it("refuses --nest with --replace", async () => {
    const r = await codesign(["sign", "--key", RSA, "--nest", "--replace", "--in", signedExe], {
      env: withPin(),
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/choose one way/);
  });

  for (const [kind, input] of [
    ["PE", () => signedExe],
    ["PowerShell script", () => signedPs1],
  ] as const) {
    it(`--nest (${kind}): a sha384 signature by another key beside the sha256 one; osslsigncode lists both, both valid`, async () => {
      const ext = path.extname(input());
      const out = path.join(t.dir, `nested${ext}`);
      const r = await codesign(
        ["sign", "--key", EC, "--nest", "--hash", "sha384", "--in", input(), "--out", out, "--json"],
        { env: withPin() },
      );
      expect(r.exitCode, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as {
        signed: number;
        files: Array<{ nested?: { sequence: number } }>;
      };
      expect(report.signed).toBe(1);
      expect(report.files[0]?.nested).toEqual({ sequence: 1 });
      const text = await verifyText(out, bothCerts);
      expect(text).toMatch(/Signature Index: 0 {2}\(Primary Signature\)/);
      expect(text).toMatch(/Signature Index: 1/);
      expect(text).toMatch(/Message digest algorithm {2}: SHA256/);
      expect(text).toMatch(/Message digest algorithm {2}: SHA384/);
      expect(text.match(/Signature verification: ok/g)).toHaveLength(2);
      expect(text).toMatch(/Number of verified signatures: 2/);
      expect(text).toMatch(/^Succeeded/m);
      expect(await nestedSequenceNumbers(out)).toEqual([1]);

      // A third signature is numbered 2, as `osslsigncode sign -nest` numbers them.
      const third = path.join(t.dir, `nested-3${ext}`);
      const r3 = await codesign(["sign", "--key", RSA, "--nest", "--in", out, "--out", third], {
        env: withPin(),
      });
      expect(r3.exitCode, r3.stderr).toBe(0);
      const text3 = await verifyText(third, bothCerts);
      expect(text3.match(/Signature verification: ok/g)).toHaveLength(3);
      expect(text3).toMatch(/Number of verified signatures: 3/);
      expect(await nestedSequenceNumbers(third)).toEqual([1, 2]);
    });
  }

  it("--replace: the new signature alone", async () => {
    const out = path.join(t.dir, "replaced.exe");
    const r = await codesign(
      ["sign", "--key", EC, "--replace", "--hash", "sha384", "--in", signedExe, "--out", out, "--json"],
      { env: withPin() },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { files: Array<{ replaced?: boolean }> }).files[0]?.replaced).toBe(true);
    const text = await verifyText(out, ecCert);
    expect(text).not.toMatch(/Signature Index: 1/);
    expect(text).toMatch(/Message digest algorithm {2}: SHA384/);
    expect(text).toMatch(/Number of verified signatures: 1/);
    expect(text).toMatch(/^Succeeded/m);
    expect(text).toMatch(/codesign dev EC/);
  });

  it("--skip-signed: signed files are left untouched and counted as skipped, the others signed", async () => {
    const out = path.join(t.dir, "skip");
    const r = await codesign(
      ["sign", "--key", RSA, "--skip-signed", "--out-dir", out, "--json", signedExe, exe, signedPs1],
      { env: withPin() },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      ok: boolean;
      signed: number;
      skipped: number;
      failed: number;
      files: Array<{ input: string; output: string; ok: boolean; skipped?: boolean; reason?: string }>;
    };
    expect(report).toMatchObject({ ok: true, signed: 1, skipped: 2, failed: 0 });
    expect(report.files.map((f) => f.skipped === true)).toEqual([true, false, true]);
    expect(report.files[0]).toMatchObject({ ok: true, reason: "already signed", output: signedExe });
    expect(readdirSync(out)).toEqual(["app.exe"]);
    await osslsigncodeVerify(path.join(out, "app.exe"), rsaCert);
  });

  it("--skip-signed on signed files only: no PIN asked for, the token never opened", async () => {
    const spy = spied("skip-only");
    const env = { ...spy.env };
    delete env["CODESIGN_PIN"];
    const r = await codesign(["sign", "--key", RSA, "--skip-signed", "--json", signedExe, signedPs1], {
      env,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, signed: 0, skipped: 2 });
    expect(await spyLog(spy.log)).not.toMatch(/C_Initialize/);
  });
});

describe("detached signatures and codesign attach", () => {
  it("--detached-signature F writes the PKCS#7, leaves the file byte-identical; attach puts it in without a token", async () => {
    const before = await sha256(exe);
    const p7 = path.join(t.dir, "app.exe.p7");
    const r = await codesign(
      [
        "sign",
        "--key",
        RSA,
        "--detached-signature",
        p7,
        "--timestamp",
        tsa.url,
        "--tsa-ca",
        tsa.caFile,
        "--in",
        exe,
        "--json",
      ],
      { env: withPin() },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ signed: 1, files: [{ output: p7, detached: true }] });
    expect(await sha256(exe)).toBe(before);
    await must("openssl", ["pkcs7", "-inform", "DER", "-in", p7, "-noout"]);

    // No PIN, no module: attaching needs no token.
    const out = path.join(t.dir, "attached.exe");
    const a = await codesign(["attach", "--signature", p7, "--in", exe, "--out", out], {
      env: { PATH: process.env["PATH"] ?? "" },
    });
    expect(a.exitCode, a.stderr).toBe(0);
    expect(await sha256(exe)).toBe(before);
    const text = await verifyText(out, rsaCert);
    expect(text).toMatch(/^Succeeded/m);
    expect(text).toMatch(/Timestamp/i);
  });

  it("with --out-dir, one <name>.p7 per file; each attaches to its own file and verifies", async () => {
    const sigs = path.join(t.dir, "sigs");
    const r = await codesign(["sign", "--key", EC, "--detached-signature", "--out-dir", sigs, exe, ps1], {
      env: withPin(),
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readdirSync(sigs).sort()).toEqual(["app.exe.p7", "script.ps1.p7"]);
    for (const f of [exe, ps1]) {
      const out = path.join(t.dir, `att-${path.basename(f)}`);
      const a = await codesign([
        "attach",
        "--signature",
        path.join(sigs, `${path.basename(f)}.p7`),
        "--in",
        f,
        "--out",
        out,
      ]);
      expect(a.exitCode, a.stderr).toBe(0);
      await osslsigncodeVerify(out, ecCert);
    }
  });

  it("attach refuses a signature made for another file (exit 2, nothing written)", async () => {
    const other = path.join(dir, "other.ps1");
    await writeFile(other, 'Write-Output "other"\r\n');
    const out = path.join(t.dir, "wrong.ps1");
    const a = await codesign([
      "attach",
      "--signature",
      path.join(t.dir, "sigs", "script.ps1.p7"),
      "--in",
      other,
      "--out",
      out,
    ]);
    expect(a.exitCode).toBe(2);
    expect(a.stderr).toMatch(/not made for/);
    expect(existsSync(out)).toBe(false);
  });

  it("attach to a signed file: refused without --nest/--replace; --nest keeps both", async () => {
    const p7 = path.join(t.dir, "sigs", "app.exe.p7");
    const refused = await codesign([
      "attach",
      "--signature",
      p7,
      "--in",
      signedExe,
      "--out",
      path.join(t.dir, "x.exe"),
    ]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/--nest.*--replace/);
    const out = path.join(t.dir, "attach-nested.exe");
    const a = await codesign(["attach", "--nest", "--signature", p7, "--in", signedExe, "--out", out]);
    expect(a.exitCode, a.stderr).toBe(0);
    const text = await verifyText(out, bothCerts);
    expect(text).toMatch(/Number of verified signatures: 2/);
    expect(text).toMatch(/^Succeeded/m);
  });
});

describe("--dry-run", () => {
  it("plans files, key, certificate and TSA; signs and writes nothing; no C_Login without --login", async () => {
    const spy = spied("dry-good");
    const out = path.join(t.dir, "dry-out");
    const r = await codesign(
      [
        "sign",
        "--dry-run",
        "--key",
        RSA,
        "--timestamp",
        tsa.url,
        "--tsa-ca",
        tsa.caFile,
        "--out-dir",
        out,
        "--json",
        exe,
        ps1,
      ],
      { env: spy.env },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout) as {
      ok: boolean;
      loggedIn: boolean;
      files: Array<{ input: string; output: string; format: string }>;
      key: { seen: string; keyType: string };
      certificate: { subject: string; matchesKey: boolean; notAfter: string };
      timestamps: Array<{ ok: boolean }>;
    };
    expect(plan.ok).toBe(true);
    expect(plan.loggedIn).toBe(false);
    expect(plan.files.map((f) => [f.format, f.output])).toEqual([
      ["osslsigncode", path.join(out, "app.exe")],
      ["osslsigncode", path.join(out, "script.ps1")],
    ]);
    expect(plan.key).toMatchObject({ seen: "public-objects", keyType: "rsa" });
    expect(plan.certificate).toMatchObject({
      subject: expect.stringContaining("codesign dev") as string,
      matchesKey: true,
    });
    expect(plan.timestamps).toEqual([expect.objectContaining({ ok: true })]);
    expect(existsSync(out)).toBe(false);
    const log = await spyLog(spy.log);
    expect(log).toMatch(/C_OpenSession/);
    expect(countLogins(log).user).toBe(0);
    expect(log).not.toMatch(/C_Sign\b/);
  });

  it("--login proves the PIN with one login and still signs nothing", async () => {
    const spy = spied("dry-login");
    const r = await codesign(["sign", "--dry-run", "--login", "--key", EC, "--json", exe], { env: spy.env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, loggedIn: true, key: { seen: "private-key" } });
    const log = await spyLog(spy.log);
    expect(countLogins(log)).toEqual({ user: 1, context: 0, so: 0, failed: 0 });
    expect(log).not.toMatch(/C_Sign\b/);
    expect(existsSync(path.join(dir, "app.signed.exe"))).toBe(false);
  });

  it("a certificate for another key: non-zero, nothing written, no login; the text plan names the problem", async () => {
    const spy = spied("dry-bad");
    // A dead TSA too: the certificate comes first, as a run would meet it, and decides the exit code.
    const deadTsa = await closedPortUrl();
    const r = await codesign(
      ["sign", "--dry-run", "--key", RSA, "--cert", ecCert, "--timestamp", deadTsa, "--in", exe],
      { env: spy.env },
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/2 problems; the first: the certificate .* is not for the key/);
    expect(r.stderr).toMatch(/no timestamp server answered/);
    expect(r.stderr).toMatch(/dry run: not ready/);
    expect(existsSync(path.join(dir, "app.signed.exe"))).toBe(false);
    expect(countLogins(await spyLog(spy.log)).user).toBe(0);
  });

  it("an already signed file, an unreadable chain file and a failing TSA are each reported; the first decides the exit code", async () => {
    const bad = await startTsa("http500");
    try {
      const chain = path.join(t.dir, "not-a-cert.pem");
      await writeFile(chain, "hello\n");
      const r = await codesign(
        [
          "sign",
          "--dry-run",
          "--key",
          RSA,
          "--chain",
          chain,
          "--timestamp",
          bad.url,
          "--json",
          signedExe,
          exe,
        ],
        { env: withPin() },
      );
      expect(r.exitCode).toBe(2);
      const plan = JSON.parse(r.stdout) as {
        ok: boolean;
        files: Array<{ problem?: { message: string } }>;
        problems: Array<{ code: string; message: string }>;
      };
      expect(plan.ok).toBe(false);
      expect(plan.files[0]?.problem?.message).toMatch(/already signed/);
      expect(plan.files[1]?.problem).toBeUndefined();
      expect(plan.problems.map((p) => p.code)).toEqual(["INVALID_INPUT", "NETWORK"]);
    } finally {
      await bad.close();
    }
  });

  it("a missing key: exit 4 (not found) when logged in", async () => {
    const r = await codesign(
      [
        "sign",
        "--dry-run",
        "--login",
        "--key",
        "pkcs11:token=codesign-dev;object=nope;type=private",
        "--in",
        exe,
      ],
      { env: withPin() },
    );
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/no private key/);
  });

  it("copies nothing into place even with --in-place", async () => {
    const copy = path.join(t.dir, "inplace.exe");
    await copyFile(exe, copy);
    const before = await sha256(copy);
    const r = await codesign(["sign", "--dry-run", "--in-place", "--key", RSA, copy], { env: withPin() });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await sha256(copy)).toBe(before);
  });
});
