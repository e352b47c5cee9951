/**
 * `codesign verify --tree`, the release-tree gate, on a tree signed by the dev token: a signed PE,
 * a signed JAR, a .tar.gz with its .p7s, an unsigned DLL, a JAR signed by another key (the
 * token's EC key, whose certificate is not an anchor unless given), a file changed after signing,
 * a README. Every signature is made by codesign and checked by verify()'s policy.
 */
import { cp, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TreeReport, TreeRow } from "../src/app/tree.js";
import { codesign, tool } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";

let t: TestToken;
let src: string;
let tree: string;
let rsaCert: string;
let ecCert: string;
let rsaFpr: string;
let ecFpr: string;

async function must(file: string, args: string[], cwd?: string): Promise<void> {
  const r = await tool(file, args, { env: t.env, ...(cwd ? { cwd } : {}) });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(" ")}: ${r.stderr}`);
}

async function sign(args: string[]): Promise<void> {
  const r = await codesign(["sign", "--pin-file", t.dev.pinFile, ...args], { env: t.env });
  if (r.exitCode !== 0) throw new Error(`codesign sign ${args.join(" ")}: ${r.stderr}`);
}

async function fingerprintOf(cert: string): Promise<string> {
  const r = await tool("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]);
  return /=([0-9A-F:]+)/.exec(r.stdout)?.[1] ?? "";
}

const gate = async (args: string[], dir = tree) => {
  const r = await codesign(["verify", "--tree", dir, "--json", ...args], { env: t.env });
  return { ...r, report: JSON.parse(r.stdout || "null") as TreeReport };
};
const failing = (rep: TreeReport): string[] =>
  rep.files.filter((f) => f.status === "invalid" || f.status === "unsigned").map((f) => f.path);
const row = (rep: TreeReport, p: string): TreeRow | undefined => rep.files.find((f) => f.path === p);

beforeAll(async () => {
  t = await createTestToken();
  rsaCert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
  rsaFpr = await fingerprintOf(rsaCert);
  ecFpr = await fingerprintOf(ecCert);
  src = path.join(t.dir, "src");
  tree = path.join(t.dir, "release");
  await mkdir(path.join(src, "classes"), { recursive: true });
  await mkdir(path.join(tree, "bin"), { recursive: true });
  await mkdir(path.join(tree, "lib"), { recursive: true });
  await writeFile(path.join(src, "min.s"), ".globl _start\n_start:\n  ret\n");
  await must("x86_64-w64-mingw32-as", ["min.s", "-o", "min.o"], src);
  await must(
    "x86_64-w64-mingw32-ld",
    ["--subsystem", "console", "-e", "_start", "min.o", "-o", "app.exe"],
    src,
  );
  await writeFile(path.join(src, "classes", "hello.txt"), "hello\n");
  await must("jar", ["cf", path.join(src, "app.jar"), "-C", path.join(src, "classes"), "."]);
  await writeFile(path.join(src, "payload.txt"), "release payload\n");
  await must("tar", ["czf", path.join(tree, "app.tar.gz"), "-C", src, "payload.txt"]);

  await sign(["--key", RSA, "--in", path.join(src, "app.exe"), "--out", path.join(tree, "bin", "app.exe")]);
  await sign(["--key", RSA, "--in", path.join(src, "app.jar"), "--out", path.join(tree, "lib", "app.jar")]);
  await sign(["--key", EC, "--in", path.join(src, "app.jar"), "--out", path.join(tree, "lib", "other.jar")]);
  await sign(["--key", RSA, path.join(tree, "app.tar.gz")]); // -> app.tar.gz.p7s beside it
  await cp(path.join(src, "app.exe"), path.join(tree, "bin", "helper.dll")); // never signed
  await writeFile(path.join(tree, "notes.txt"), "signed notes\n");
  await sign(["--key", RSA, path.join(tree, "notes.txt")]);
  await writeFile(path.join(tree, "notes.txt"), "signed notes, changed afterwards\n");
  await writeFile(path.join(tree, "README"), "not signed, not signable\n");
}, 300_000);

afterAll(async () => {
  await t?.cleanup();
});

describe("codesign verify --tree", () => {
  it("fails (exit 6) on exactly the unsigned DLL, the JAR of another signer and the changed file", async () => {
    const r = await gate(["--ca", rsaCert]);
    expect(r.exitCode, r.stderr).toBe(6);
    expect(failing(r.report).sort()).toEqual(["bin/helper.dll", "lib/other.jar", "notes.txt"]);
    expect(row(r.report, "bin/helper.dll")?.status).toBe("unsigned");
    expect(row(r.report, "lib/other.jar")?.status).toBe("invalid");
    expect(row(r.report, "notes.txt")).toMatchObject({ kind: "detached", status: "invalid" });
    expect(row(r.report, "notes.txt")?.reason).toMatch(/message digest differs/);
    for (const p of ["bin/app.exe", "lib/app.jar", "app.tar.gz"]) {
      expect(row(r.report, p), p).toMatchObject({ status: "valid", fingerprint: rsaFpr });
    }
    expect(row(r.report, "bin/app.exe")?.kind).toBe("authenticode");
    expect(row(r.report, "lib/app.jar")?.kind).toBe("jar");
    expect(row(r.report, "app.tar.gz")).toMatchObject({ kind: "detached", signature: "app.tar.gz.p7s" });
    expect(row(r.report, "app.tar.gz.p7s")).toMatchObject({ kind: "signature", status: "other" });
    expect(row(r.report, "README")).toMatchObject({ kind: "other", status: "other" });
    expect(r.report.summary).toMatchObject({ valid: 3, invalid: 2, unsigned: 1 });
  });

  it("the human listing names every row and the verdict", async () => {
    const r = await codesign(["verify", "--tree", tree, "--ca", rsaCert], { env: t.env });
    expect(r.exitCode).toBe(6);
    expect(r.stdout).toMatch(/^unsigned\s+authenticode\s+bin\/helper\.dll/m);
    expect(r.stdout).toMatch(/^unsigned-other\s+other\s+README/m);
    expect(r.stdout).toMatch(/^valid\s+jar\s+lib\/app\.jar\s+.*\[[0-9A-F:]{95}\]/m);
    expect(r.stderr).toMatch(/FAILS: 9 files: 3 valid, 2 invalid, 1 unsigned/);
  });

  it("passes (exit 0) once the files that are not ours are --ignore'd and the changed one is gone", async () => {
    const clean = path.join(t.dir, "clean");
    await cp(tree, clean, { recursive: true });
    await rm(path.join(clean, "notes.txt"));
    await rm(path.join(clean, "notes.txt.p7s"));
    const r = await gate(["--ca", rsaCert, "--ignore", "*.dll", "--ignore", "lib/other.jar"], clean);
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.report.ok).toBe(true);
    expect(failing(r.report)).toEqual([]);
    expect(row(r.report, "bin/helper.dll")?.status).toBe("ignored");
    expect(row(r.report, "lib/other.jar")?.status).toBe("ignored");

    // The right fingerprint passes (any case, colons or not); a wrong one fails every signed row.
    const right = await gate(
      [
        "--ca",
        rsaCert,
        "--ignore",
        "*.dll",
        "--ignore",
        "lib/other.jar",
        "--expect-signer",
        rsaFpr.replace(/:/g, "").toLowerCase(),
      ],
      clean,
    );
    expect(right.exitCode, right.stdout).toBe(0);
    const wrong = await gate(
      ["--ca", rsaCert, "--ignore", "*.dll", "--ignore", "lib/other.jar", "--expect-signer", ecFpr],
      clean,
    );
    expect(wrong.exitCode).toBe(6);
    expect(failing(wrong.report).sort()).toEqual(["app.tar.gz", "bin/app.exe", "lib/app.jar"]);
    expect(row(wrong.report, "lib/app.jar")?.reason).toMatch(/not an expected signer/);
  });

  it("--expect-signer catches a trusted signer that is not expected", async () => {
    const both = ["--ca", rsaCert, "--ca", ecCert, "--ignore", "*.dll", "--ignore", "notes.txt*"];
    const trusted = await gate(both);
    expect(trusted.exitCode, trusted.stdout).toBe(0);
    expect(row(trusted.report, "lib/other.jar")).toMatchObject({ status: "valid", fingerprint: ecFpr });
    const pinned = await gate([...both, "--expect-signer", rsaFpr]);
    expect(pinned.exitCode).toBe(6);
    expect(failing(pinned.report)).toEqual(["lib/other.jar"]);
  });

  it("a link out of the tree fails the gate; a bad --expect-signer is a usage error", async () => {
    const linked = path.join(t.dir, "linked");
    await mkdir(linked);
    await cp(path.join(tree, "app.tar.gz"), path.join(linked, "app.tar.gz"));
    await cp(path.join(tree, "app.tar.gz.p7s"), path.join(linked, "app.tar.gz.p7s"));
    await symlink(rsaCert, path.join(linked, "escape.pem"));
    const r = await gate(["--ca", rsaCert], linked);
    expect(r.exitCode).toBe(6);
    expect(row(r.report, "escape.pem")).toMatchObject({ kind: "symlink", status: "invalid" });
    const u = await codesign(["verify", "--tree", tree, "--expect-signer", "abc"], { env: t.env });
    expect(u.exitCode).toBe(2);
  });
});
