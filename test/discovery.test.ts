import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initDevToken } from "../src/core/pkcs11/dev-token.js";
import { codesign, ROOT, tool } from "./helpers/cli.js";
import { createTestToken, publicKeyPem, type TestToken } from "./helpers/token.js";
import { opensslDgstVerify } from "./helpers/verifiers.js";

let t: TestToken;

beforeAll(async () => {
  t = await createTestToken();
});

afterAll(async () => {
  await t?.cleanup();
});

interface KeyRow {
  uri: string;
  label: string;
  id: string;
  keyType: string;
  bits?: number;
  curve?: string;
  hasCertificate: boolean;
  mechanisms: string[];
}

describe("tokens and keys", () => {
  it("tokens --json lists the dev token with a URI that selects it", async () => {
    const r = await codesign(["tokens", "--json"], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { tokens: Array<Record<string, unknown>> };
    const dev = out.tokens.find((x) => x.label === "codesign-dev");
    expect(dev).toMatchObject({ manufacturer: "SoftHSM project", model: "SoftHSM v2" });
    expect(dev?.flags).toContain("login-required");
    expect(String(dev?.uri)).toMatch(
      /^pkcs11:token=codesign-dev;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial=[0-9a-f]+$/,
    );
    const parsed = await codesign(["uri", "parse", "--json", String(dev?.uri)]);
    expect(JSON.parse(parsed.stdout)).toMatchObject({ token: "codesign-dev", serial: dev?.serial });
  });

  it("keys with a PIN: every private key, ready-to-paste URIs, no PIN in them", async () => {
    const r = await codesign(["keys", "--json", "--pin-file", t.dev.pinFile], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { loggedIn: boolean; keys: KeyRow[] };
    expect(out.loggedIn).toBe(true);
    const rsa = out.keys.find((k) => k.label === "rsa-2048");
    const ec = out.keys.find((k) => k.label === "ec-p256");
    expect(rsa).toMatchObject({ id: "01", keyType: "rsa", bits: 2048, hasCertificate: true });
    expect(rsa?.mechanisms).toEqual(expect.arrayContaining(["RSA-PKCS", "RSA-PKCS-PSS", "SHA256-RSA-PKCS"]));
    expect(ec).toMatchObject({ id: "02", keyType: "ec", curve: "P-256", hasCertificate: true });
    expect(ec?.mechanisms).toContain("ECDSA");
    expect(rsa?.uri).toMatch(
      /^pkcs11:token=codesign-dev;serial=[0-9a-f]+;object=rsa-2048;id=%01;type=private$/,
    );
    expect(r.stdout).not.toContain(t.pin);
    expect(r.stdout).not.toMatch(/pin-value|pin-source/);

    // The URI really is ready to paste: it signs.
    const sig = path.join(t.dir, "pasted.sig");
    const s = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        String(rsa?.uri),
        "--pin-file",
        t.dev.pinFile,
        "--in",
        t.dev.config,
        "--out",
        sig,
      ],
      { env: t.env },
    );
    expect(s.exitCode, s.stderr).toBe(0);
    await opensslDgstVerify(await publicKeyPem(t, "01"), t.dev.config, sig);
  });

  it("keys without a PIN: the public view and a note that a login shows more", async () => {
    const r = await codesign(["keys", "--json"], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { loggedIn: boolean; note: string; keys: KeyRow[] };
    expect(out.loggedIn).toBe(false);
    expect(out.note).toMatch(/login .* shows every private key/);
    expect(out.keys.map((k) => k.label).sort()).toEqual(["ec-p256", "rsa-2048"]);
    const text = await codesign(["keys"], { env: t.env });
    expect(text.stderr).toMatch(/no PIN given/);
    expect(text.stdout).toMatch(/rsa-2048 +01 +rsa-2048 +yes +pkcs11:token=codesign-dev/);
  });

  it("pubkey matches the key pkcs11-tool reads", async () => {
    const r = await codesign(["pubkey", "--key", "pkcs11:token=codesign-dev;object=ec-p256"], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    // execa strips the final newline of stdout
    expect(`${r.stdout}\n`).toBe(await readFile(await publicKeyPem(t, "02"), "utf8"));
  });
});

describe("certificates made by the token key", () => {
  it("csr verifies with openssl req -verify and carries the subject", async () => {
    const out = path.join(t.dir, "req.pem");
    const r = await codesign(
      [
        "csr",
        "--key",
        "pkcs11:token=codesign-dev;object=rsa-2048",
        "--pin-file",
        t.dev.pinFile,
        "--subject",
        "/CN=Release Signer/O=Example",
        "--out",
        out,
      ],
      { env: t.env },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const v = await tool("openssl", ["req", "-in", out, "-noout", "-verify", "-subject"]);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(`${v.stdout}${v.stderr}`).toMatch(/verify OK/i);
    expect(v.stdout).toMatch(/CN ?= ?Release Signer/);
  });

  it("cert selfsign --store: openssl verifies it, and the token then has it", async () => {
    const out = path.join(t.dir, "self.pem");
    const r = await codesign(
      [
        "cert",
        "selfsign",
        "--key",
        "pkcs11:token=codesign-dev;object=ec-p256",
        "--pin-file",
        t.dev.pinFile,
        "--subject",
        "CN=EC Signer,O=Example",
        "--days",
        "30",
        "--out",
        out,
        "--store",
      ],
      { env: t.env },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const v = await tool("openssl", ["verify", "-x509_strict", "-CAfile", out, out]);
    expect(v.stdout.trim(), v.stderr).toBe(`${out}: OK`);
    const text = await tool("openssl", ["x509", "-in", out, "-noout", "-text"]);
    expect(text.stdout).toMatch(/Code Signing/);
    expect(text.stdout).toMatch(/Digital Signature/);
    // The stored certificate is what pkcs11-tool now reads for CKA_ID 02.
    const der = path.join(t.dir, "stored.der");
    const read = await tool(
      "pkcs11-tool",
      [
        "--module",
        t.module,
        "--token-label",
        "codesign-dev",
        "--read-object",
        "--type",
        "cert",
        "--id",
        "02",
        "-o",
        der,
      ],
      {
        env: t.env,
      },
    );
    expect(read.exitCode, read.stderr).toBe(0);
    const subj = await tool("openssl", ["x509", "-inform", "DER", "-in", der, "-noout", "-subject"]);
    expect(subj.stdout).toMatch(/CN ?= ?EC Signer/);
    const objects = await tool(
      "pkcs11-tool",
      ["--module", t.module, "--token-label", "codesign-dev", "--list-objects", "--type", "cert"],
      {
        env: t.env,
      },
    );
    expect(objects.stdout.match(/ID: *02/g)?.length).toBe(1); // replaced, not duplicated
  });
});

describe("dev token", () => {
  it("init twice is harmless: same token, same keys", async () => {
    const again = await initDevToken(t.dev.dir);
    expect(again.created).toBe(false);
    expect(again.keys.map((k) => k.uri)).toEqual(t.dev.keys.map((k) => k.uri));
    const r = await codesign(["keys", "--json", "--pin-file", t.dev.pinFile], { env: t.env });
    const labels = (JSON.parse(r.stdout) as { keys: KeyRow[] }).keys.map((k) => k.label).sort();
    expect(labels).toEqual(["ec-p256", "rsa-2048"]);
  });

  it("pads the token label with blanks, so other PKCS#11 consumers see exactly codesign-dev", async () => {
    const r = await tool("p11tool", ["--provider", t.module, "--list-token-urls"], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/;token=codesign-dev$/m);
  });

  it("keeps its PIN files private", async () => {
    const { stat } = await import("node:fs/promises");
    expect((await stat(t.dev.pinFile)).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(t.dev.dir, "tokens"))).mode & 0o777).toBe(0o700);
  });

  it("the quickstart example signs and verifies with openssl", async () => {
    const r = await tool(
      "bash",
      [path.join(ROOT, "examples/quickstart.sh"), path.join(t.dir, "quickstart-token")],
      { cwd: ROOT },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(`${r.stdout}${r.stderr}`.match(/Verified OK/g)?.length).toBe(2);
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/pin-value/);
  });

  it("dev-token rm removes it", async () => {
    const dir = path.join(t.dir, "quickstart-token");
    const r = await codesign(["dev-token", "rm", "--dir", dir]);
    expect(r.exitCode, r.stderr).toBe(0);
    const { existsSync } = await import("node:fs");
    expect(existsSync(dir)).toBe(false);
  });
});

describe("the native addon is loaded only when a token is touched", () => {
  const deny = ["-r", path.join(ROOT, "test/fixtures/deny-pkcs11js.cjs")];

  it("--help, sign --help and uri parse work without pkcs11js", async () => {
    const help = await codesign(["--help"], {}, deny);
    expect(help.exitCode, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/codesign <command>/);
    const signHelp = await codesign(["sign", "--help"], {}, deny);
    expect(signHelp.exitCode).toBe(0);
    expect(signHelp.stdout).toMatch(/Examples:/);
    const parse = await codesign(["uri", "parse", "pkcs11:token=a%20b;object=k;type=private"], {}, deny);
    expect(parse.exitCode, parse.stderr).toBe(0);
    expect(parse.stdout).toMatch(/token: +a b/);
  });

  it("a command that needs a token fails clearly when the addon is missing", async () => {
    const r = await codesign(["tokens"], { env: t.env }, deny);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/pkcs11js native addon could not be loaded/);
    expect(r.stderr).toMatch(/npm ci/);
  });
});
