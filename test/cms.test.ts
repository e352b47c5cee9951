/**
 * CMS signatures (`codesign sign --tool cms`) on a real SoftHSM2 token. Every signature is
 * checked by `openssl cms -verify`, and its structure (algorithm identifiers, certificates) read
 * back with pkijs.
 */
import { existsSync } from "node:fs";
import { readFile, readdir, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import * as pkijs from "pkijs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign, tool } from "./helpers/cli.js";
import { addKeyWithPkcs11Tool, createTestToken, type TestToken } from "./helpers/token.js";
import { signerInfoOf } from "./helpers/tsa.js";
import { opensslCmsVerify } from "./helpers/verifiers.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
let t: TestToken;
let data: string;
let rsaCert: string;
let ecCert: string;

beforeAll(async () => {
  t = await createTestToken();
  data = path.join(t.dir, "release notes.txt");
  await writeFile(data, "the release\n".repeat(1000));
  rsaCert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
});

afterAll(async () => {
  await t?.cleanup();
});

const sign = (args: string[]) =>
  codesign(["sign", "--tool", "cms", "--pin-file", t.dev.pinFile, ...args], { env: t.env });

async function signedDataOf(file: string): Promise<pkijs.SignedData> {
  const info = pkijs.ContentInfo.fromBER(new Uint8Array(await readFile(file)).buffer);
  return new pkijs.SignedData({ schema: info.content });
}

const leftovers = async () => (await readdir(t.dir)).filter((n) => n.includes(".tmp"));

describe("codesign sign --tool cms", () => {
  for (const [name, key, cert, extra, algorithm] of [
    ["RSA PKCS#1 v1.5", RSA, () => rsaCert, [], "1.2.840.113549.1.1.1"],
    ["RSA-PSS", RSA, () => rsaCert, ["--mechanism", "rsa-pss"], "1.2.840.113549.1.1.10"],
    ["ECDSA P-256", EC, () => ecCert, [], "1.2.840.10045.4.3.2"],
    ["ECDSA P-256, sha384", EC, () => ecCert, ["--hash", "sha384"], "1.2.840.10045.4.3.3"],
    [
      "RSA, sha384, no signed attributes",
      RSA,
      () => rsaCert,
      ["--hash", "sha384", "--no-signed-attributes"],
      "1.2.840.113549.1.1.1",
    ],
    [
      "RSA-PSS, no signed attributes",
      RSA,
      () => rsaCert,
      ["--mechanism", "rsa-pss", "--no-signed-attributes"],
      "1.2.840.113549.1.1.10",
    ],
    ["ECDSA, no signed attributes", EC, () => ecCert, ["--no-signed-attributes"], "1.2.840.10045.4.3.2"],
  ] as const) {
    it(`detached, ${name}: openssl cms -verify accepts it`, async () => {
      const out = path.join(t.dir, `${name.replace(/\W+/g, "-")}.p7s`);
      const r = await sign(["--key", key, ...extra, "--in", data, "--out", out]);
      expect(r.exitCode, r.stderr).toBe(0);
      await opensslCmsVerify(out, cert(), { content: data });

      const signed = await signedDataOf(out);
      expect(signed.encapContentInfo.eContent).toBeUndefined();
      const si = signed.signerInfos[0];
      expect(si?.signatureAlgorithm.algorithmId).toBe(algorithm);
      const attrs = si?.signedAttrs?.attributes.map((a) => a.type) ?? [];
      if (extra.includes("--no-signed-attributes" as never)) expect(si?.signedAttrs).toBeUndefined();
      else
        expect([...attrs].sort()).toEqual([
          "1.2.840.113549.1.9.3",
          "1.2.840.113549.1.9.4",
          "1.2.840.113549.1.9.5",
        ]);
      if (algorithm === "1.2.840.113549.1.1.10") {
        // As openssl writes it: SHA-256, MGF1 with SHA-256, salt = hash length.
        const params = new pkijs.RSASSAPSSParams({ schema: si?.signatureAlgorithm.algorithmParams });
        expect(params.hashAlgorithm.algorithmId).toBe("2.16.840.1.101.3.4.2.1");
        expect(params.maskGenAlgorithm.algorithmId).toBe("1.2.840.113549.1.1.8");
        expect(params.saltLength).toBe(32);
      }
    });
  }

  it("attached and PEM: openssl verifies it without the content and returns the content", async () => {
    const out = path.join(t.dir, "attached.pem");
    const r = await sign(["--key", EC, "--attached", "--format", "pem", "--in", data, "--out", out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await readFile(out, "utf8")).toMatch(/^-----BEGIN CMS-----/);
    const content = path.join(t.dir, "attached-content.txt");
    await opensslCmsVerify(out, ecCert, { pem: true, out: content });
    expect(await readFile(content, "utf8")).toBe(await readFile(data, "utf8"));
  });

  it("attached DER, RSA-PSS: openssl verifies it and the content is embedded", async () => {
    const out = path.join(t.dir, "attached.p7s");
    const r = await sign(["--key", RSA, "--mechanism", "rsa-pss", "--attached", "--in", data, "--out", out]);
    expect(r.exitCode, r.stderr).toBe(0);
    const content = path.join(t.dir, "attached-der-content.txt");
    await opensslCmsVerify(out, rsaCert, { out: content });
    expect(await readFile(content, "utf8")).toBe(await readFile(data, "utf8"));
    const signed = await signedDataOf(out);
    expect(signed.encapContentInfo.eContent).toBeDefined();
  });

  it("--attached refuses a file over 256 MiB before touching the token, and writes nothing", async () => {
    const big = path.join(t.dir, "big.bin");
    await writeFile(big, "");
    await truncate(big, 256 * 1024 * 1024 + 1); // sparse: costs no disk and no time
    const out = path.join(t.dir, "big.p7s");
    const r = await sign(["--key", RSA, "--attached", "--in", big, "--out", out]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/over 256 MiB/);
    expect(r.stderr).toMatch(/detached/);
    expect(existsSync(out)).toBe(false);
  });

  it("defaults the output to <file>.p7s, and --tool auto picks CMS for a text file", async () => {
    const r = await codesign(["sign", "--key", RSA, "--pin-file", t.dev.pinFile, data], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslCmsVerify(`${data}.p7s`, rsaCert, { content: data });
  });

  it("--in alone writes <in>.p7s and --json reports what was made", async () => {
    const input = path.join(t.dir, "json-input.txt");
    await writeFile(input, "json\n");
    const r = await codesign(["--json", "sign", "--tool", "cms", "--key", EC, "--in", input], {
      env: { ...t.env, CODESIGN_PIN: t.pin },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: true,
      tool: "cms",
      files: [{ input, output: `${input}.p7s`, ok: true, scheme: "ecdsa", attached: false, encoding: "der" }],
    });
    expect(r.stdout).not.toContain(t.pin);
    await opensslCmsVerify(`${input}.p7s`, ecCert, { content: input });
  });

  it("a batch of files with one login writes <file>.p7s into --out-dir", async () => {
    const files = [];
    for (let i = 0; i < 5; i++) {
      const f = path.join(t.dir, `batch-${i}.txt`);
      await writeFile(f, `file ${i}\n`);
      files.push(f);
    }
    const dir = path.join(t.dir, "cms-batch");
    const r = await sign(["--key", EC, "--jobs", "2", "--out-dir", dir, ...files]);
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of files)
      await opensslCmsVerify(path.join(dir, `${path.basename(f)}.p7s`), ecCert, { content: f });
  });

  it("a CA-issued certificate (--cert DER) with --chain: openssl verifies to the root; no duplicates", async () => {
    // A root and an intermediate made by openssl; the leaf certifies the token's RSA key (via
    // `codesign csr`) for code signing.
    const dir = t.dir;
    const ossl = async (args: string[]) => {
      const r = await tool("openssl", args, { cwd: dir });
      expect(r.exitCode, r.stderr).toBe(0);
    };
    await writeFile(
      path.join(dir, "ca.ext"),
      "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n",
    );
    await writeFile(
      path.join(dir, "leaf.ext"),
      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n",
    );
    await ossl(
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "root.key", "-out", "root.pem"].concat([
        "-subj",
        "/CN=cms test root",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
      ]),
    );
    await ossl([
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "int.key",
      "-out",
      "int.csr",
      "-subj",
      "/CN=cms test intermediate",
    ]);
    await ossl(
      ["x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial"].concat([
        "-out",
        "int.pem",
        "-days",
        "2",
        "-extfile",
        "ca.ext",
      ]),
    );
    const csr = await codesign(
      [
        "csr",
        "--key",
        RSA,
        "--pin-file",
        t.dev.pinFile,
        "--subject",
        "CN=cms test leaf",
        "--out",
        path.join(dir, "leaf.csr"),
      ],
      { env: t.env },
    );
    expect(csr.exitCode, csr.stderr).toBe(0);
    await ossl(
      ["x509", "-req", "-in", "leaf.csr", "-CA", "int.pem", "-CAkey", "int.key", "-CAcreateserial"].concat([
        "-out",
        "leaf.der",
        "-outform",
        "DER",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
      ]),
    );

    const out = path.join(dir, "issued.p7s");
    const r = await sign(
      ["--key", RSA, "--cert", path.join(dir, "leaf.der"), "--chain", path.join(dir, "int.pem")].concat([
        "--chain",
        path.join(dir, "int.pem"),
        "--in",
        data,
        "--out",
        out,
      ]),
    );
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslCmsVerify(out, path.join(dir, "root.pem"), { content: data });
    const signed = await signedDataOf(out);
    expect(signed.certificates).toHaveLength(2); // leaf + intermediate, the repeat dropped
    expect((await signerInfoOf(out)).sid).toBeInstanceOf(pkijs.IssuerAndSerialNumber);

    // codesign verify: trusted through the chain to the root, nothing to warn about.
    const v = await codesign([
      "--json",
      "verify",
      "--in",
      data,
      "--signature",
      out,
      "--ca",
      path.join(dir, "root.pem"),
    ]);
    expect(v.exitCode, v.stderr).toBe(0);
    const report = JSON.parse(v.stdout) as { signer: string; warnings: string[] };
    expect(report.signer).toContain("cms test leaf");
    expect(report.warnings).toEqual([]);
  });

  it("no certificate on the token and no --cert: exit 4 with both ways out, nothing written", async () => {
    await addKeyWithPkcs11Tool(t, "rsa:2048", "09", "nocert");
    const out = path.join(t.dir, "nocert.p7s");
    const r = await sign([
      "--key",
      "pkcs11:token=codesign-dev;object=nocert;type=private",
      "--in",
      data,
      "--out",
      out,
    ]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/--cert/);
    expect(r.stderr).toMatch(/cert selfsign --store/);
    expect(existsSync(out)).toBe(false);
    expect(await leftovers()).toEqual([]);
  });

  it("a --cert for another key: exit 2 saying so, nothing written", async () => {
    const out = path.join(t.dir, "wrong.p7s");
    const r = await sign(["--key", RSA, "--cert", ecCert, "--in", data, "--out", out]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/not for the key/);
    expect(existsSync(out)).toBe(false);
  });

  it("a mechanism that does not fit the key: exit 2", async () => {
    const out = path.join(t.dir, "misfit.p7s");
    const r = await sign(["--key", EC, "--mechanism", "rsa-pss", "--in", data, "--out", out]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/rsa-pss/);
    expect(existsSync(out)).toBe(false);
  });

  it("refuses to overwrite its input", async () => {
    const r = await sign(["--key", EC, "--in", data, "--out", data]);
    expect(r.exitCode).toBe(2);
    expect(await readFile(data, "utf8")).toBe("the release\n".repeat(1000));
  });
});
