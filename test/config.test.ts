/**
 * Generated configs, each used by the real tool it is for: the engine openssl.cnf by
 * `openssl dgst -engine pkcs11`, the SunPKCS11 config by `keytool -list` (with the dev token
 * outside the first slot), the p11-kit module file by `p11-kit list-modules`. The provider config
 * is checked structurally (pkcs11-provider is not packaged for Debian 12). Then `codesign doctor`.
 */
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign, tool } from "./helpers/cli.js";
import { opensslDgstVerify } from "./helpers/verifiers.js";
import { createTestTokenNotFirst, publicKeyPem, tokenLabels, type TestToken } from "./helpers/token.js";

const TOKEN = "pkcs11:token=codesign-dev";
let t: TestToken;

beforeAll(async () => {
  t = await createTestTokenNotFirst();
});

afterAll(async () => {
  await t?.cleanup();
});

const config = (args: string[], env: Record<string, string> = {}) =>
  codesign(["config", ...args], { env: { ...t.env, ...env } });

describe("codesign config", () => {
  it("openssl-engine: the real openssl signs with it, and openssl verifies the result", async () => {
    const cnf = path.join(t.dir, "engine.cnf");
    const r = await config(["openssl-engine", "--key", TOKEN, "--out", cnf]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`OPENSSL_CONF='${cnf}' openssl dgst -sha256 -engine pkcs11`);
    const text = await readFile(cnf, "utf8");
    expect(text).toContain(`MODULE_PATH = ${t.module}`);
    expect(text).not.toContain(t.pin);
    const data = path.join(t.dir, "engine-data.txt");
    await writeFile(data, "signed by an existing openssl pipeline\n");
    const sign = await tool(
      "openssl",
      [
        "dgst",
        "-sha256",
        "-engine",
        "pkcs11",
        "-keyform",
        "engine",
        "-sign",
        `${TOKEN};object=rsa-2048;type=private`,
        "-passin",
        "env:PIN",
        "-out",
        `${data}.sig`,
        data,
      ],
      { env: { ...t.env, OPENSSL_CONF: cnf, PIN: t.pin } },
    );
    expect(sign.exitCode, sign.stderr).toBe(0);
    await opensslDgstVerify(await publicKeyPem(t, "01"), data, `${data}.sig`);
  });

  it("refuses to overwrite without --force, and with --embed-pin writes the PIN into a 0600 file", async () => {
    const cnf = path.join(t.dir, "engine-pin.cnf");
    await writeFile(cnf, "keep me\n");
    const refused = await config(["openssl-engine", "--key", TOKEN, "--out", cnf]);
    expect(refused.exitCode).toBe(2);
    expect(await readFile(cnf, "utf8")).toBe("keep me\n");
    const r = await config([
      "openssl-engine",
      "--key",
      TOKEN,
      "--out",
      cnf,
      "--force",
      "--embed-pin",
      "--pin-file",
      t.dev.pinFile,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await readFile(cnf, "utf8")).toContain(`PIN = ${t.pin}`);
    expect((await stat(cnf)).mode & 0o777).toBe(0o600);
    expect(`${r.stdout}${r.stderr}`).not.toContain(t.pin);
  });

  it("sunpkcs11: names the slot holding the token (not the first), and keytool lists the keys through it", async () => {
    expect((await tokenLabels(t)).indexOf("codesign-dev")).toBeGreaterThan(0);
    const cfg = path.join(t.dir, "pkcs11.cfg");
    const r = await config(["sunpkcs11", "--key", TOKEN, "--out", cfg]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await readFile(cfg, "utf8")).toMatch(/^slot = \d+$/m);
    expect(await readFile(cfg, "utf8")).not.toMatch(/slotListIndex/);
    const list = await tool(
      "keytool",
      [
        "-list",
        "-keystore",
        "NONE",
        "-storetype",
        "PKCS11",
        "-addprovider",
        "SunPKCS11",
        "-providerArg",
        cfg,
        "-storepass:env",
        "P",
      ],
      { env: { ...t.env, P: t.pin } },
    );
    expect(list.exitCode, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^rsa-2048, PrivateKeyEntry/m);
    expect(list.stdout).toMatch(/^ec-p256, PrivateKeyEntry/m);
  });

  it("p11-kit-module: p11-kit loads the module from the file", async () => {
    // p11-kit skips user config when run as root (as CI is): then the system directory it reads
    // is used, with a name of our own that is removed afterwards.
    const root = process.getuid?.() === 0;
    const home = path.join(t.dir, "home");
    const modules = root ? "/etc/pkcs11/modules" : path.join(home, ".config", "pkcs11", "modules");
    await mkdir(modules, { recursive: true });
    const name = `codesign-test-${process.pid}`;
    const file = path.join(modules, `${name}.module`);
    // The spy module in front of SoftHSM2: p11-kit ignores a second registration of one library.
    const spy = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
    try {
      const r = await config(["p11-kit-module", "--module", spy, "--out", file]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(await readFile(file, "utf8")).toContain(`module: ${spy}`);
      const list = await tool("p11-kit", ["list-modules"], {
        env: { ...t.env, HOME: home, PKCS11SPY: t.module, PKCS11SPY_OUTPUT: path.join(t.dir, "spy.log") },
      });
      const section = list.stdout.split(/^(?=\S)/m).find((s) => s.startsWith(`${name}:`));
      expect(section, list.stdout).toBeDefined();
      expect(section).toContain("token: codesign-dev");
    } finally {
      await rm(file, { force: true });
    }
  });

  it("openssl-provider: both providers activated, the PIN only referenced as file:", async () => {
    const cnf = path.join(t.dir, "provider.cnf");
    const r = await config(["openssl-provider", "--key", TOKEN, "--pin-file", t.dev.pinFile, "--out", cnf]);
    expect(r.exitCode, r.stderr).toBe(0);
    const text = await readFile(cnf, "utf8");
    expect(text).toMatch(/^\[provider_section\]\ndefault = default_section\npkcs11 = pkcs11_section$/m);
    expect(text.match(/^activate = 1$/gm)).toHaveLength(2);
    expect(text).toContain(`pkcs11-module-path = ${t.module}`);
    expect(text).toContain(`pkcs11-module-token-pin = file:${t.dev.pinFile}`);
    expect(text).not.toContain(t.pin);
  });

  it("a value with a newline cannot inject a line or a section (exit 2, nothing written)", async () => {
    const cnf = path.join(t.dir, "inject.cnf");
    const r = await config(["openssl-engine", "--module", "/lib/x.so\n[evil]\nx = 1", "--out", cnf]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/control character/);
    await expect(stat(cnf)).rejects.toThrow();
  });
});

describe("codesign doctor", () => {
  it("a healthy token: every check that is not a warning passes, the PIN never printed", async () => {
    const r = await codesign(
      ["--json", "doctor", "--key", `${TOKEN};object=rsa-2048`, "--pin-file", t.dev.pinFile],
      { env: t.env },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const { checks } = JSON.parse(r.stdout) as {
      checks: Array<{ name: string; ok: boolean; severity: string }>;
    };
    expect(checks.filter((c) => c.severity === "fail")).toEqual([]);
    for (const name of [
      "pkcs11js",
      "module",
      "tokens",
      "login",
      "key",
      "test signature",
      "certificate",
      "osslsigncode",
      "jarsigner",
    ]) {
      expect(
        checks.find((c) => c.name === name),
        name,
      ).toMatchObject({ ok: true });
    }
    expect(`${r.stdout}${r.stderr}`).not.toContain(t.pin);
  });

  it("a module that does not exist: a failed check with its fix, and a non-zero exit", async () => {
    const r = await codesign(["--json", "doctor", "--module", "/nonexistent/module.so"], { env: t.env });
    expect(r.exitCode).not.toBe(0);
    const { checks } = JSON.parse(r.stdout) as {
      checks: Array<{ name: string; severity: string; fix?: string }>;
    };
    const module = checks.find((c) => c.name === "module");
    expect(module?.severity).toBe("fail");
    expect(module?.fix).toBeTruthy();
  });
});
