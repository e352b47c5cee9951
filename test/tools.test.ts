/**
 * The tool adapters end to end on a real SoftHSM2 token whose token is NOT in the first slot:
 * osslsigncode (a PowerShell script and a PE built here with binutils-mingw-w64), jarsigner
 * (a JAR made with `jar`), openssl (dgst and cms). Every output is checked by that ecosystem's
 * own verifier; the command lines are checked argument by argument, without the PIN.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SignJob } from "../adapters/contract.js";
import { adapter as jarsigner } from "../adapters/jarsigner.js";
import { adapter as openssl } from "../adapters/openssl.js";
import { Secret } from "../src/core/pkcs11/pin.js";
import type { KeyInfo } from "../src/core/pkcs11/keys.js";
import type { TokenEntry } from "../src/core/pkcs11/module.js";
import { codesign, tool } from "./helpers/cli.js";
import { createTestTokenNotFirst, publicKeyPem, tokenLabels, type TestToken } from "./helpers/token.js";
import { startTsa, type Tsa } from "./helpers/tsa.js";
import {
  jarsignerVerify,
  opensslCmsVerify,
  opensslDgstVerify,
  osslsigncodeVerify,
} from "./helpers/verifiers.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
let t: TestToken;
let dir: string;
let ps1: string;
let exe: string;
let jar: string;
let rsaCert: string;
let ecCert: string;
let tsa: Tsa;

async function must(file: string, args: string[], cwd?: string): Promise<void> {
  const r = await tool(file, args, { env: t.env, ...(cwd ? { cwd } : {}) });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(" ")}: ${r.stderr}`);
}

beforeAll(async () => {
  t = await createTestTokenNotFirst();
  dir = path.join(t.dir, "in");
  await mkdir(dir);
  ps1 = path.join(dir, "install script.ps1");
  await writeFile(ps1, 'Write-Output "hello from codesign"\r\n');
  await writeFile(path.join(dir, "min.s"), ".globl _start\n_start:\n  ret\n");
  await must("x86_64-w64-mingw32-as", ["min.s", "-o", "min.o"], dir);
  exe = path.join(dir, "app.exe");
  await must("x86_64-w64-mingw32-ld", ["--subsystem", "console", "-e", "_start", "min.o", "-o", exe], dir);
  await mkdir(path.join(dir, "classes"));
  await writeFile(path.join(dir, "classes", "hello.txt"), "hello\n");
  jar = path.join(dir, "app.jar");
  await must("jar", ["cf", jar, "-C", path.join(dir, "classes"), "."]);
  rsaCert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
  tsa = await startTsa("good");
}, 180_000);

afterAll(async () => {
  await tsa?.close();
  await t?.cleanup();
});

const sign = (args: string[]) => codesign(["sign", "--pin-file", t.dev.pinFile, ...args], { env: t.env });

describe("the token is not in the first slot", () => {
  it("softhsm2 lists another token before it", async () => {
    const labels = await tokenLabels(t);
    expect(labels.indexOf("codesign-dev")).toBeGreaterThan(0);
  });
});

describe("osslsigncode", () => {
  it("the design card's example: a PE signed with the key on the token, verified by osslsigncode", async () => {
    const out = path.join(t.dir, "app.signed.exe");
    const r = await sign(["--tool", "osslsigncode", "--key", RSA, "--in", exe, "--out", out]);
    expect(r.exitCode, r.stderr).toBe(0);
    await osslsigncodeVerify(out, rsaCert);
    const v = await codesign(["verify", "--in", out, "--ca", rsaCert]);
    expect(v.exitCode, v.stderr).toBe(0);
  });

  it("a PowerShell script with an EC key, --tool auto, default output name, and a timestamp", async () => {
    const r = await sign(["--key", EC, "--timestamp", tsa.url, "--tsa-ca", tsa.caFile, ps1]);
    expect(r.exitCode, r.stderr).toBe(0);
    const out = path.join(dir, "install script.signed.ps1");
    await osslsigncodeVerify(out, ecCert);
    const text = await tool("osslsigncode", [
      "verify",
      "-CAfile",
      ecCert,
      "-TSA-CAfile",
      tsa.caFile,
      "-in",
      out,
    ]);
    expect(text.stdout).toMatch(/Timestamp/i);
    expect(await readFile(ps1, "utf8")).toBe('Write-Output "hello from codesign"\r\n'); // the input is untouched
  });

  it("--in-place replaces the input with a signed copy that verifies", async () => {
    const copy = path.join(t.dir, "inplace.exe");
    await writeFile(copy, await readFile(exe));
    const r = await sign(["--key", RSA, "--in-place", copy]);
    expect(r.exitCode, r.stderr).toBe(0);
    await osslsigncodeVerify(copy, rsaCert);
  });

  it("unverified files are refused by verify (exit 6)", async () => {
    const v = await codesign(["verify", "--in", exe, "--ca", rsaCert]);
    expect(v.exitCode).toBe(6);
  });

  it("names with a leading dash, spaces, quotes and non-ASCII are never read as options", async () => {
    const odd = path.join(dir, `-n "évil" 'name'.ps1`);
    await writeFile(odd, 'Write-Output "odd"\r\n');
    const out = path.join(dir, `-out ü.ps1`);
    const r = await codesign(
      [
        "sign",
        "--pin-file",
        t.dev.pinFile,
        "--tool",
        "osslsigncode",
        "--key",
        RSA,
        `--in=${odd}`,
        `--out=${out}`,
      ],
      {
        env: t.env,
      },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    await osslsigncodeVerify(out, rsaCert);
  });

  it("a batch with --out-dir: three scripts, one login, all verified", async () => {
    const files = [];
    for (const n of ["a", "b", "c"]) {
      const f = path.join(dir, `${n}.ps1`);
      await writeFile(f, `Write-Output "${n}"\r\n`);
      files.push(f);
    }
    const out = path.join(t.dir, "signed-batch");
    const r = await sign(["--key", RSA, "--out-dir", out, "--jobs", "2", ...files]);
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of files) await osslsigncodeVerify(path.join(out, path.basename(f)), rsaCert);
  });

  it("a wrong PIN: exit 3 before the tool runs, no output, the PIN not echoed", async () => {
    const out = path.join(t.dir, "wrong.exe");
    const r = await codesign(["sign", "--tool", "osslsigncode", "--key", RSA, "--in", exe, "--out", out], {
      env: { ...t.env, CODESIGN_PIN: "00000000" },
    });
    expect(r.exitCode).toBe(3);
    expect(r.stderr).not.toContain("00000000");
    expect(existsSync(out)).toBe(false);
  });
});

describe("jarsigner", () => {
  for (const [name, key, cert] of [
    ["RSA", RSA, () => rsaCert],
    ["EC", EC, () => ecCert],
  ] as const) {
    it(`signs a JAR with the ${name} key through a SunPKCS11 config naming the right slot`, async () => {
      const out = path.join(t.dir, `app-${name}.jar`);
      const r = await sign(["--tool", "jarsigner", "--key", key, "--in", jar, "--out", out]);
      expect(r.exitCode, r.stderr).toBe(0);
      await jarsignerVerify(out, cert());
      expect((await codesign(["verify", "--in", out, "--ca", cert()])).exitCode).toBe(0);
    });
  }

  it("timestamps with -tsa, failing over from a dead URL", async () => {
    const out = path.join(t.dir, "app-ts.jar");
    const r = await sign([
      "--tool",
      "jarsigner",
      "--key",
      RSA,
      "--timestamp",
      "http://127.0.0.1:9/tsa",
      "--timestamp",
      tsa.url,
      "--timestamp-retries",
      "0",
      "--in",
      jar,
      "--out",
      out,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const text = await jarsignerVerify(out, rsaCert, tsa.caFile);
    expect(text).not.toMatch(/do not include a timestamp/);
  });

  it("an unsigned JAR fails verify with exit 6", async () => {
    const v = await codesign(["verify", "--in", jar, "--ca", rsaCert]);
    expect(v.exitCode).toBe(6);
    expect(v.stderr).toMatch(/not signed/);
  });
});

describe("openssl (engine)", () => {
  it("dgst: a raw signature openssl verifies with the public key", async () => {
    const data = path.join(dir, "data.bin");
    await writeFile(data, "data for openssl\n");
    const r = await sign(["--tool", "openssl", "--key", RSA, "--in", data, "--out", `${data}.sig`]);
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslDgstVerify(await publicKeyPem(t, "01"), data, `${data}.sig`);
  });

  it("cms: detached CMS that openssl cms -verify accepts", async () => {
    const data = path.join(dir, "data2.bin");
    await writeFile(data, "more data\n");
    const r = await sign([
      "--tool",
      "openssl",
      "--mode",
      "cms",
      "--key",
      EC,
      "--in",
      data,
      "--out",
      `${data}.p7s`,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslCmsVerify(`${data}.p7s`, ecCert, { content: data });
  });
});

describe("exact command lines", () => {
  const pin = "93817465";
  const job: SignJob = {
    input: "-in.exe",
    output: "/out/app.exe",
    keyUri: "pkcs11:token=t;object=k;id=%01;type=private",
    key: {
      label: "k",
      id: Uint8Array.of(1),
      keyType: "rsa",
      mechanisms: [],
      uri: "pkcs11:token=t;object=k;id=%01;type=private",
    } as KeyInfo,
    token: { slotId: "42" } as TokenEntry,
    modulePath: "/lib/module.so",
    pin: new Secret(pin, "CODESIGN_PIN"),
    certFile: "/w/signer.pem",
    certOnToken: false,
    chainFiles: ["/w/ca.pem"],
    hash: "sha256",
    timestamps: [],
    failover: {},
    workDir: "/w",
    options: {},
  };
  const cwd = process.cwd();

  it("jarsigner", () => {
    const argv = jarsigner.args({ ...job, input: "app.jar", output: "signed.jar" });
    expect(argv).toEqual([
      "-keystore",
      "NONE",
      "-storetype",
      "PKCS11",
      "-addprovider",
      "SunPKCS11",
      "-providerArg",
      "/w/sunpkcs11.cfg",
      "-storepass:env",
      "CODESIGN_JAR_PIN",
      "-sigalg",
      "SHA256withRSA",
      "-digestalg",
      "SHA-256",
      "-certchain",
      "/w/certchain.pem",
      "-signedjar",
      path.join(cwd, "signed.jar"),
      path.join(cwd, "app.jar"),
      "k",
    ]);
    expect(argv.join(" ")).not.toContain(pin);
  });

  it("openssl", () => {
    const argv = openssl.args({ ...job, input: "data", output: "data.sig" });
    expect(argv).toEqual([
      "dgst",
      "-sha256",
      "-engine",
      "pkcs11",
      "-keyform",
      "engine",
      "-sign",
      job.keyUri,
      "-passin",
      "env:CODESIGN_OPENSSL_PIN",
      "-out",
      path.join(cwd, "data.sig"),
      path.join(cwd, "data"),
    ]);
    expect(argv.join(" ")).not.toContain(pin);
  });
});
