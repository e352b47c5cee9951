/**
 * `--tool apksigner`: the argv (pure), the keytool alias lookup, and a real APK — built here by
 * `aapt package` from a minimal AndroidManifest.xml (apksigner refuses text XML) — signed with
 * the dev token's RSA key through SunPKCS11 and checked by `apksigner verify --print-certs`.
 * Without android.jar, aapt cannot write android: attributes, so the test APK has no
 * minSdkVersion: apksigner then refuses EC keys (ECDSA needs API 18), which is tested as such.
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JAVA17_EXPORT, adapter, verifyApk } from "../adapters/apksigner.js";
import type { SignJob } from "../adapters/contract.js";
import { formatFor } from "../src/app/sign.js";
import { codesign, tool } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";

describe("apksigner adapter", () => {
  const job = {
    input: "app.apk",
    output: "out.apk",
    workDir: "/tmp/w",
    key: { label: "rsa-2048" },
    options: { alias: "my cert" },
  } as unknown as SignJob;

  it("puts the Java 17 export before `sign`, the PIN in the environment, v1+v2+v3 on", () => {
    const argv = adapter.args(job);
    expect(argv[0]).toBe(JAVA17_EXPORT);
    expect(argv[1]).toBe("sign");
    expect(argv.join(" ")).toContain(
      "--ks NONE --ks-type PKCS11 --provider-class sun.security.pkcs11.SunPKCS11",
    );
    expect(argv.join(" ")).toContain("--provider-arg /tmp/w/sunpkcs11.cfg --ks-pass env:CODESIGN_APK_PIN");
    expect(argv).toContain("my cert");
    for (const v of ["--v1-signing-enabled", "--v2-signing-enabled", "--v3-signing-enabled"]) {
      expect(argv[argv.indexOf(v) + 1]).toBe("true");
    }
    expect(argv.slice(-3)).toEqual(["--out", path.resolve("out.apk"), path.resolve("app.apk")]);
  });

  it("--tool auto routes .apk to apksigner", () => {
    expect(formatFor("app.apk")).toBe("apksigner");
  });
});

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
let t: TestToken;
let apk: string;
const sign = (args: string[]) => codesign(["sign", "--pin-file", t.dev.pinFile, ...args], { env: t.env });

describe("codesign sign --tool apksigner", () => {
  beforeAll(async () => {
    t = await createTestToken();
    const dir = path.join(t.dir, "apk");
    await mkdir(dir);
    await writeFile(
      path.join(dir, "AndroidManifest.xml"),
      '<?xml version="1.0" encoding="utf-8"?>\n' +
        '<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="org.codesign.test">\n' +
        "  <application/>\n</manifest>\n",
    );
    apk = path.join(dir, "app.apk");
    const r = await tool("aapt", ["package", "-f", "-M", path.join(dir, "AndroidManifest.xml"), "-F", apk]);
    if (r.exitCode !== 0) throw new Error(`aapt package: ${r.stderr}`);
  }, 180_000);

  afterAll(async () => {
    await t?.cleanup();
  });

  it("signs with the RSA key (alias from keytool): apksigner verify accepts v1, v2 and v3", async () => {
    const out = path.join(path.dirname(apk), "app.signed.apk");
    const r = await sign(["--key", RSA, "--in", apk]); // --tool auto: .apk → apksigner
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\(apksigner\)/);
    const v = await tool("apksigner", ["verify", "--verbose", "--print-certs", out]);
    expect(v.stdout, v.stderr).toMatch(/^Verifies$/m);
    for (const s of ["v1", "v2", "v3"])
      expect(v.stdout).toMatch(new RegExp(`^Verified using ${s} scheme .*: true$`, "m"));
    expect(v.stdout).toContain("Signer #1 certificate DN: CN=codesign dev RSA, O=codesign dev token");
    const cert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
    const checked = await verifyApk(out, { certFile: cert });
    expect(checked.schemes).toEqual(expect.arrayContaining(["v1", "v2", "v3"]));
    // codesign verify: the signer must be the certificate named; none named is a usage error.
    expect((await codesign(["verify", "--in", out, "--cert", cert])).exitCode).toBe(0);
    const other = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
    expect((await codesign(["verify", "--in", out, "--ca", other])).exitCode).toBe(6);
    expect((await codesign(["verify", "--in", out])).exitCode).toBe(2);
  });

  it("an EC key on an APK without minSdkVersion ≥ 18: apksigner's reason and a hint, no output", async () => {
    const out = path.join(t.dir, "app-ec.apk");
    const r = await sign(["--tool", "apksigner", "--key", EC, "--in", apk, "--out", out]);
    expect(r.exitCode).toBe(5);
    expect(r.stderr).toMatch(/ECDSA signatures only supported for minSdkVersion 18/);
    expect(r.stderr).toMatch(/minSdkVersion 18 or higher/);
    expect(existsSync(out)).toBe(false);
  });

  it("refuses --timestamp before any login", async () => {
    const r = await sign(["--key", RSA, "--timestamp", "http://127.0.0.1:9/", "--in", apk]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/does not timestamp/);
  });
});
