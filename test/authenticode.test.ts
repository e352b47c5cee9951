/**
 * Authenticode through codesign's core: osslsigncode only extracts what must be signed and
 * attaches the finished signature; the token key signs in-process. pkcs11-spy sits in front of
 * SoftHSM2 to count module loads and logins, and a wrapper on PATH records every osslsigncode
 * command line and environment. Each output is checked by osslsigncode verify, EFI images also by
 * sbverify.
 */
import { execa } from "execa";
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, codesign, tool } from "./helpers/cli.js";
import {
  addKeyWithPkcs11Tool,
  countLogins,
  createTestToken,
  PKCS11_SPY,
  type TestToken,
} from "./helpers/token.js";
import { osslsigncodeVerify, sbverify } from "./helpers/verifiers.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
const ALWAYS = "pkcs11:token=codesign-dev;object=aa-rsa;type=private";
let t: TestToken;
let dir: string;
let rsaCert: string;
let ecCert: string;
let alwaysCert: string;
/** 4 scripts, 4 console PEs, 4 EFI applications. */
const inputs: string[] = [];

async function must(file: string, args: string[], cwd?: string): Promise<void> {
  const r = await tool(file, args, { env: t.env, ...(cwd ? { cwd } : {}) });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(" ")}: ${r.stderr}`);
}

beforeAll(async () => {
  t = await createTestToken();
  dir = path.join(t.dir, "in");
  await mkdir(dir);
  rsaCert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
  await writeFile(path.join(dir, "min.s"), ".globl _start\n_start:\n  ret\n");
  await must("x86_64-w64-mingw32-as", ["min.s", "-o", "min.o"], dir);
  for (let i = 0; i < 4; i++) {
    const ps1 = path.join(dir, `script-${i}.ps1`);
    await writeFile(ps1, `Write-Output "script ${i}"\r\n`);
    const exe = path.join(dir, `app-${i}.exe`);
    await must("x86_64-w64-mingw32-ld", ["--subsystem", "console", "-e", "_start", "min.o", "-o", exe], dir);
    const efi = path.join(dir, `boot-${i}.efi`);
    await must("x86_64-w64-mingw32-ld", ["--subsystem", "10", "-e", "_start", "min.o", "-o", efi], dir);
    inputs.push(ps1, exe, efi);
  }
  await addKeyWithPkcs11Tool(t, "rsa:2048", "a1", "aa-rsa", { alwaysAuth: true });
  alwaysCert = path.join(t.dir, "aa-rsa.pem");
  const c = await codesign(
    ["cert", "selfsign", "--key", ALWAYS, "--subject", "CN=Always", "--out", alwaysCert],
    {
      env: { ...t.env, CODESIGN_PIN: t.pin },
    },
  );
  if (c.exitCode !== 0) throw new Error(c.stderr);
}, 120_000);

afterAll(async () => {
  await t?.cleanup();
});

/** Environment with pkcs11-spy in front of SoftHSM2 and a fresh log. */
function spied(name: string): { env: Record<string, string>; log: string } {
  const log = path.join(t.dir, `${name}.spy.log`);
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

const calls = (log: string, fn: string) => log.match(new RegExp(`^\\d+: ${fn}\\s*$`, "gm"))?.length ?? 0;

describe("a batch of Authenticode files is one module load and one login", () => {
  for (const round of [1, 2, 3]) {
    it(`round ${round}: 12 scripts, PEs and EFI images with --jobs 4, every one verified`, async () => {
      const out = path.join(t.dir, `batch-${round}`);
      const spy = spied(`batch-${round}`);
      const r = await codesign(["sign", "--key", RSA, "--jobs", "4", "--out-dir", out, "--json", ...inputs], {
        env: spy.env,
      });
      expect(r.exitCode, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as { ok: boolean; tool: string; signed: number; sessions: number };
      expect(report).toMatchObject({ ok: true, tool: "osslsigncode", signed: 12, sessions: 4 });
      const log = await readFile(spy.log, "utf8");
      expect(calls(log, "C_Initialize")).toBe(1);
      expect(calls(log, "C_Sign")).toBe(12);
      expect(countLogins(log)).toEqual({ user: 1, context: 0, so: 0, failed: 0 });
      for (const f of inputs) {
        const signed = path.join(out, path.basename(f));
        await osslsigncodeVerify(signed, rsaCert);
        if (f.endsWith(".efi")) await sbverify(signed, rsaCert);
      }
    });
  }
});

describe("osslsigncode never sees the token", () => {
  let wrapperDir: string;
  let record: string;

  beforeAll(async () => {
    wrapperDir = path.join(t.dir, "wrapper");
    await mkdir(wrapperDir);
    // One file per call: several osslsigncode runs at once must not interleave their records.
    record = path.join(t.dir, "osslsigncode-calls");
    const script = path.join(wrapperDir, "osslsigncode");
    await writeFile(
      script,
      [
        "#!/bin/sh",
        `{ printf 'ARGV:'; printf ' %s' "$@"; printf '\\n'; env | sed 's/^/ENV: /'; } > '${record}/'$$`,
        'exec /usr/bin/osslsigncode "$@"',
        "",
      ].join("\n"),
    );
    await chmod(script, 0o755);
  });

  for (const [how, pinArgs, pinEnv] of [
    ["CODESIGN_PIN", [] as string[], true],
    ["--pin-file", ["--pin-file", "PINFILE"], false],
  ] as const) {
    it(`with the PIN from ${how}: no module, key URI, -pass/-readpass or PIN in its argv or environment`, async () => {
      await rm(record, { recursive: true, force: true });
      await mkdir(record);
      const out = path.join(t.dir, pinEnv ? "wrapped-env" : "wrapped-file");
      const args = pinArgs.map((a) => (a === "PINFILE" ? t.dev.pinFile : a));
      const r = await codesign(
        ["sign", "--key", EC, ...args, "--out-dir", out, "--timestamp-retries", "0", ...inputs.slice(0, 3)],
        {
          env: {
            ...t.env,
            ...(pinEnv ? { CODESIGN_PIN: t.pin } : {}),
            PATH: `${wrapperDir}:${process.env["PATH"] ?? ""}`,
          },
        },
      );
      expect(r.exitCode, r.stderr).toBe(0);
      const runs = await readdir(record);
      const text = (await Promise.all(runs.map((c) => readFile(path.join(record, c), "utf8")))).join("\n");
      const argvLines = text.split("\n").filter((l) => l.startsWith("ARGV:"));
      // --version once, then extract-data and attach-signature for each of the three files.
      expect(argvLines.filter((l) => / extract-data /.test(l))).toHaveLength(3);
      expect(argvLines.filter((l) => / attach-signature /.test(l))).toHaveLength(3);
      const leaks = text
        .split("\n")
        .filter(
          (l) => /-pkcs11(module|engine)|pkcs11:|-pass\b|-readpass|CODESIGN_PIN/.test(l) || l.includes(t.pin),
        );
      expect(leaks).toEqual([]);
      for (const f of inputs.slice(0, 3)) await osslsigncodeVerify(path.join(out, path.basename(f)), ecCert);
    });
  }
});

describe("keys that need a login per signature", () => {
  it("a script and a PE signed with an always-authenticate key: one user login, one context login each", async () => {
    const spy = spied("always");
    const out = path.join(t.dir, "always");
    const files = [inputs[0] ?? "", inputs[1] ?? ""];
    const r = await codesign(["sign", "--key", ALWAYS, "--cert", alwaysCert, "--out-dir", out, ...files], {
      env: spy.env,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(countLogins(await readFile(spy.log, "utf8"))).toEqual({ user: 1, context: 2, so: 0, failed: 0 });
    for (const f of files) await osslsigncodeVerify(path.join(out, path.basename(f)), alwaysCert);
  });
});

describe("every file type osslsigncode shapes", () => {
  it("a CAB (gcab) and an MSI (wixl), with a description and URL in the signature", async () => {
    const txt = path.join(dir, "hello.txt");
    await writeFile(txt, "hello\n");
    const cab = path.join(dir, "t.cab");
    await must("gcab", ["-c", cab, "hello.txt"], dir);
    const wxs = path.join(dir, "t.wxs");
    await writeFile(
      wxs,
      `<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="codesign test" Language="1033" Version="1.0.0" Manufacturer="codesign" UpgradeCode="12345678-1234-1234-1234-123456789012">
    <Package InstallerVersion="200" Compressed="yes"/>
    <Media Id="1" Cabinet="t.cab" EmbedCab="yes"/>
    <Directory Id="TARGETDIR" Name="SourceDir"><Directory Id="ProgramFilesFolder"><Directory Id="D" Name="t">
      <Component Id="C" Guid="12345678-1234-1234-1234-123456789013"><File Id="F" Source="hello.txt"/></Component>
    </Directory></Directory></Directory>
    <Feature Id="Main" Level="1"><ComponentRef Id="C"/></Feature>
  </Product>
</Wix>
`,
    );
    const msi = path.join(dir, "t.msi");
    await must("wixl", ["-o", msi, wxs], dir);
    const out = path.join(t.dir, "cab-msi");
    const r = await codesign(
      [
        "sign",
        "--key",
        RSA,
        "--description",
        "Codesign Tëst",
        "--url",
        "https://example.com/app",
        "--out-dir",
        out,
        cab,
        msi,
      ],
      { env: { ...t.env, CODESIGN_PIN: t.pin } },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of [cab, msi]) {
      const signed = path.join(out, path.basename(f));
      await osslsigncodeVerify(signed, rsaCert);
      const v = await tool("osslsigncode", ["verify", "-CAfile", rsaCert, "-in", signed]);
      expect(v.stdout).toMatch(/URL description: https:\/\/example.com\/app/);
      expect(v.stdout).toMatch(/Text description: Codesign Tëst/);
    }
  });
});

describe("interrupted", () => {
  it("SIGINT in the middle of an Authenticode batch: finished copies verify, nothing partial, no tool left running", async () => {
    const src = path.join(t.dir, "many");
    await mkdir(src);
    const files: string[] = [];
    for (let i = 0; i < 400; i++) {
      const f = path.join(src, `s${i}.ps1`);
      await writeFile(f, `Write-Output "${i}"\r\n`);
      files.push(f);
    }
    const out = path.join(t.dir, "many-out");
    const tmp = await mkdtemp(path.join(t.dir, "tmpdir-"));
    const child = execa("node", [BIN, "sign", "--key", RSA, "--out-dir", out, ...files], {
      env: { ...t.env, CODESIGN_PIN: t.pin, TMPDIR: tmp, NO_COLOR: "1" },
      reject: false,
      stdin: "ignore",
    });
    for (let i = 0; i < 400; i++) {
      const done = await readdir(out).catch(() => []);
      if (done.length >= 30) break;
      await sleep(25);
    }
    child.kill("SIGINT");
    const r = await child;
    expect(r.exitCode).not.toBe(0);
    await sleep(500); // a tool still running would write its temp file now
    const written = await readdir(out);
    expect(written.filter((n) => n.includes(".tmp"))).toEqual([]);
    expect(written.length).toBeGreaterThan(0);
    expect(written.length, "the batch was not interrupted").toBeLessThan(files.length);
    for (const n of written.slice(0, 10)) await osslsigncodeVerify(path.join(out, n), rsaCert);
    expect(await readdir(tmp)).toEqual([]);
    const running = await tool("pgrep", ["-f", out]);
    expect(running.stdout.trim()).toBe("");
  });
});
