/**
 * Native JAR signing (`--tool jar`): the pure manifest/.SF text (src/core/pki/jar.ts) unit by
 * unit, then real JARs made by `jar`, signed with the dev token's RSA and EC keys and checked by
 * `jarsigner -verify -strict` with only the signer's certificate as trust, and by `codesign verify`.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildManifest,
  isSignatureRelated,
  manifestLine,
  parseManifest,
  signatureFile,
  signerName,
} from "../src/core/pki/jar.js";
import { formatFor } from "../src/app/sign.js";
import { codesign, tool } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";
import { startTsa, type Tsa } from "./helpers/tsa.js";
import { jarsignerVerify } from "./helpers/verifiers.js";

const b64 = (hash: "sha256" | "sha384", data: string | Uint8Array) =>
  createHash(hash).update(data).digest("base64");

describe("manifest text", () => {
  it("wraps at 72 bytes with continuation lines, never cutting a UTF-8 character", () => {
    const long = manifestLine("Name", `${"a".repeat(100)}é${"b".repeat(70)}`);
    const lines = long.split("\r\n").slice(0, -1);
    expect(lines.length).toBeGreaterThan(2);
    for (const l of lines) expect(Buffer.byteLength(l)).toBeLessThanOrEqual(72);
    for (const l of lines.slice(1)) expect(l.startsWith(" ")).toBe(true);
    expect(lines.map((l, i) => (i ? l.slice(1) : l)).join("")).toBe(
      `Name: ${"a".repeat(100)}é${"b".repeat(70)}`,
    );
    const accent = manifestLine("Name", `${"x".repeat(65)}é`); // "Name: " + 65 = 71 bytes, é is 2
    expect(accent).toBe(`Name: ${"x".repeat(65)}\r\n é\r\n`);
    expect(manifestLine("A", "b")).toBe("A: b\r\n");
    expect(() => manifestLine("Name", "a\nb")).toThrow(/CR, LF or NUL/);
  });

  it("parses sections keeping their bytes, continuation lines joined", () => {
    const text =
      "Manifest-Version: 1.0\r\nCreated-By: x\r\n\r\n" +
      `Name: ${"p".repeat(66)}\r\n qq\r\nSHA-256-Digest: abc=\r\n\r\n` +
      "Name: b\nSealed: true\n";
    const m = parseManifest(Buffer.from(text));
    expect(Buffer.from(m.main.raw).toString()).toBe("Manifest-Version: 1.0\r\nCreated-By: x\r\n\r\n");
    expect(m.sections.map((s) => s.name)).toEqual([`${"p".repeat(66)}qq`, "b"]);
    // The last section had no blank line: it gets one so others can follow.
    expect(Buffer.from(m.sections[1]?.raw ?? []).toString()).toBe("Name: b\nSealed: true\n\r\n");
    expect(() => parseManifest(Buffer.from("A: 1\r\n\r\nB: 2\r\n\r\n"))).toThrow(/no Name/);
  });

  it("keeps digested sections byte for byte, adds digests to the others, and new sections", () => {
    const existing = parseManifest(
      Buffer.from(
        "Manifest-Version: 1.0\r\n\r\n" +
          `Name: a\r\nSHA-256-Digest: ${b64("sha256", "A")}\r\n\r\n` +
          "Name: pkg/\r\nSealed: true\r\n\r\n" +
          "Name: s\r\nSealed: false\r\n\r\n",
      ),
    );
    const entries = [
      { name: "a", digests: { sha256: b64("sha256", "A"), sha384: b64("sha384", "A") } },
      { name: "s", digests: { sha384: b64("sha384", "S") } },
      { name: "new", digests: { sha384: b64("sha384", "N") } },
    ];
    const m = buildManifest(existing, entries, "sha384", "codesign");
    const text = Buffer.from(m.bytes).toString();
    expect(text).toBe(
      "Manifest-Version: 1.0\r\n\r\n" +
        `Name: a\r\nSHA-256-Digest: ${b64("sha256", "A")}\r\n\r\n` +
        "Name: pkg/\r\nSealed: true\r\n\r\n" +
        `Name: s\r\nSealed: false\r\n${wrap(`SHA-384-Digest: ${b64("sha384", "S")}`)}\r\n` +
        `Name: new\r\n${wrap(`SHA-384-Digest: ${b64("sha384", "N")}`)}\r\n`,
    );
    // A kept digest that no longer matches its entry: the JAR changed after its manifest.
    const stale = [{ name: "a", digests: { sha256: b64("sha256", "changed"), sha384: "x" } }];
    expect(() => buildManifest(existing, stale, "sha384", "codesign")).toThrow(/has changed/);
  });

  it("writes a new manifest and a .SF digesting it, its main section and each section", () => {
    const m = buildManifest(
      undefined,
      [{ name: "x.class", digests: { sha256: "AAAA" } }],
      "sha256",
      "codesign",
    );
    const main = "Manifest-Version: 1.0\r\nCreated-By: codesign\r\n\r\n";
    const section = "Name: x.class\r\nSHA-256-Digest: AAAA\r\n\r\n";
    expect(Buffer.from(m.bytes).toString()).toBe(main + section);
    const sf = Buffer.from(signatureFile(m, "sha256", "codesign")).toString();
    expect(sf).toContain(`SHA-256-Digest-Manifest: ${b64("sha256", main + section)}\r\n`);
    expect(sf).toContain(`${wrap(`SHA-256-Digest-Manifest-Main-Attributes: ${b64("sha256", main)}`)}`);
    expect(sf).toContain(`\r\n\r\nName: x.class\r\nSHA-256-Digest: ${b64("sha256", section)}\r\n\r\n`);
    expect(sf.startsWith("Signature-Version: 1.0\r\n")).toBe(true);
  });

  it("names the signer after the CN: upper case, A-Z 0-9 _ -, 8 characters, unique in the JAR", () => {
    expect(signerName("codesign dev RSA")).toBe("CODESIGN");
    expect(signerName("Acme Corp")).toBe("ACME_COR");
    expect(signerName("a.b")).toBe("A_B");
    expect(signerName(undefined)).toBe("SIGNER");
    expect(signerName("ÄÖÜ")).toBe("SIGNER");
    expect(signerName("codesign dev EC", ["CODESIGN"])).toBe("CODESIG2");
    expect(signerName("x", ["X", "X2"])).toBe("X3");
  });

  it("knows which entries belong to signing", () => {
    for (const n of [
      "META-INF/MANIFEST.MF",
      "META-INF/A.SF",
      "meta-inf/a.rsa",
      "META-INF/B.EC",
      "META-INF/SIG-X",
    ]) {
      expect(isSignatureRelated(n), n).toBe(true);
    }
    for (const n of ["META-INF/", "META-INF/x/A.SF", "META-INF/services/x", "a.SF"]) {
      expect(isSignatureRelated(n), n).toBe(false);
    }
  });

  it("--tool auto picks jar for .jar/.war/.ear", () => {
    expect(formatFor("app.jar")).toBe("jar");
    expect(formatFor("app.WAR")).toBe("jar");
  });
});

/** The line as manifestLine wraps it. */
const wrap = (line: string): string => {
  const i = line.indexOf(": ");
  return manifestLine(line.slice(0, i), line.slice(i + 2));
};

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
let t: TestToken;
let dir: string;
let jar: string;
let stored: string;
let rsaCert: string;
let ecCert: string;
let tsa: Tsa;

async function must(file: string, args: string[]): Promise<string> {
  const r = await tool(file, args, { env: t.env });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const sign = (args: string[]) => codesign(["sign", "--pin-file", t.dev.pinFile, ...args], { env: t.env });

describe("codesign sign --tool jar", () => {
  beforeAll(async () => {
    t = await createTestToken();
    dir = path.join(t.dir, "in");
    const classes = path.join(dir, "classes");
    await mkdir(path.join(classes, "com", "example"), { recursive: true });
    await writeFile(path.join(classes, "hello.txt"), "hello\n");
    await writeFile(path.join(classes, "com", "example", `${"Long".repeat(20)}Name.class`), "not a class\n");
    await writeFile(path.join(classes, "com", "example", "Grüße.txt"), "non-ASCII name\n");
    jar = path.join(dir, "app.jar");
    await must("jar", ["cf", jar, "-C", classes, "."]);
    stored = path.join(dir, "stored.jar");
    await must("jar", ["cf0", stored, "-C", classes, "."]); // stored entries, as nested JARs are
    rsaCert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
    ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
    tsa = await startTsa("good");
  }, 180_000);

  afterAll(async () => {
    await tsa?.close();
    await t?.cleanup();
  });

  for (const [name, key, cert, hash] of [
    ["RSA", RSA, () => rsaCert, "sha256"],
    ["EC", EC, () => ecCert, "sha256"],
    ["RSA", RSA, () => rsaCert, "sha384"],
    ["EC", EC, () => ecCert, "sha384"],
  ] as const) {
    it(`signs with the ${name} key and ${hash}: jarsigner -verify -strict and codesign verify accept it`, async () => {
      const out = path.join(t.dir, `app-${name}-${hash}.jar`);
      const r = await sign(["--key", key, "--hash", hash, "--in", jar, "--out", out]);
      expect(r.exitCode, r.stderr).toBe(0);
      await jarsignerVerify(out, cert());
      const listing = await must("unzip", ["-Z1", out]);
      const names = listing.trim().split("\n");
      const block = name === "RSA" ? "RSA" : "EC";
      expect(names.slice(0, 3)).toEqual([
        "META-INF/MANIFEST.MF",
        "META-INF/CODESIGN.SF",
        `META-INF/CODESIGN.${block}`,
      ]);
      const mf = await must("unzip", ["-p", out, "META-INF/MANIFEST.MF"]);
      expect(mf).toMatch(/^Created-By: .*\(.*\)\r$/m); // the main attributes `jar` wrote are kept
      expect(mf).toContain(`${hash === "sha256" ? "SHA-256" : "SHA-384"}-Digest: `);
      expect(mf).not.toMatch(/^Name: com\/\r$/m); // directories are not digested
      for (const line of mf.split("\r\n")) expect(Buffer.byteLength(line)).toBeLessThanOrEqual(72);
      const v = await codesign(["verify", "--in", out, "--ca", cert()]);
      expect(v.exitCode, v.stderr).toBe(0);
    });
  }

  it("is the default for .jar under --tool auto, and keeps stored entries stored", async () => {
    const out = path.join(t.dir, "stored-signed.jar");
    const r = await sign(["--json", "--key", RSA, "--in", stored, "--out", out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { tool: string }).tool).toBe("jar");
    await jarsignerVerify(out, rsaCert);
    const z = await must("unzip", ["-v", out]);
    expect(z).toMatch(/\s6\s+Stored\s+6\s.*hello\.txt/);
    // JarInputStream (what `jar xf` uses) reads stored entries only with sizes in their headers.
    const x = path.join(t.dir, "x-stored");
    await mkdir(x);
    await tool("jar", ["xf", out], { cwd: x });
    expect(await readFile(path.join(x, "hello.txt"), "utf8")).toBe("hello\n");
  });

  it("timestamps through the pipeline's TSA client: jarsigner reads the token", async () => {
    const out = path.join(t.dir, "app-ts.jar");
    const r = await sign([
      "--tool",
      "jar",
      "--key",
      EC,
      "--timestamp",
      tsa.url,
      "--tsa-ca",
      tsa.caFile,
      "--in",
      jar,
      "--out",
      out,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const text = await jarsignerVerify(out, ecCert, tsa.caFile);
    expect(text).not.toMatch(/do not include a timestamp/);
    const verbose = await tool("jarsigner", ["-verify", "-verbose", out]);
    expect(verbose.stdout).toMatch(/Timestamped by/);
  });

  it("adds a second signer with another hash: both stay valid", async () => {
    const first = path.join(t.dir, "first.jar");
    const both = path.join(t.dir, "both.jar");
    expect((await sign(["--key", RSA, "--in", jar, "--out", first])).exitCode).toBe(0);
    const r = await sign(["--tool", "jar", "--key", EC, "--hash", "sha384", "--in", first, "--out", both]);
    expect(r.exitCode, r.stderr).toBe(0);
    const names = (await must("unzip", ["-Z1", both])).trim().split("\n");
    expect(names).toEqual(expect.arrayContaining(["META-INF/CODESIGN.SF", "META-INF/CODESIGN.RSA"]));
    expect(names).toEqual(expect.arrayContaining(["META-INF/CODESIG2.SF", "META-INF/CODESIG2.EC"]));
    // The first signer's .SF and block are copied unchanged.
    for (const f of ["META-INF/CODESIGN.SF", "META-INF/CODESIGN.RSA"]) {
      expect(await must("unzip", ["-p", both, f])).toBe(await must("unzip", ["-p", first, f]));
    }
    await jarsignerVerify(both, rsaCert, ecCert);
    const verbose = await tool("jarsigner", ["-verify", "-verbose", both]);
    expect(verbose.stdout).toContain('Signed by "CN=codesign dev RSA, O=codesign dev token"');
    expect(verbose.stdout).toContain('Signed by "CN=codesign dev EC, O=codesign dev token"');
    expect(verbose.stdout).toMatch(/Digest algorithm: SHA-256/);
    expect(verbose.stdout).toMatch(/Digest algorithm: SHA-384/);
    // Each entry is signed by both (jarsigner marks such entries "s" once, lists both signers).
    const v = await codesign(["verify", "--json", "--in", both, "--ca", rsaCert, "--ca", ecCert]);
    expect(v.exitCode, v.stderr).toBe(0);
    expect((JSON.parse(v.stdout) as { signers: string[] }).signers).toHaveLength(2);
  });

  it("refuses a file that is not a zip before any login", async () => {
    const bad = path.join(dir, "bad.jar");
    await writeFile(bad, "not a zip");
    const r = await sign(["--key", RSA, "--in", bad, "--out", path.join(t.dir, "bad-out.jar")]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/not a readable JAR/);
  });

  it("--in-place replaces the JAR only with a copy that verifies", async () => {
    const copy = path.join(t.dir, "inplace.jar");
    await writeFile(copy, await readFile(jar));
    const r = await sign(["--key", EC, "--in-place", "--in", copy]);
    expect(r.exitCode, r.stderr).toBe(0);
    await jarsignerVerify(copy, ecCert);
  });
});
