/**
 * issue #15 item 5: `codesign verify --online` asks the OCSP responders and CRL distribution
 * points the certificates name. A private CA (test/helpers/revocation-pki.ts) with real
 * `openssl ocsp` responders and CRLs from `openssl ca -gencrl`; CMS signed by the SoftHSM2 token's
 * key through `codesign sign`; every signature checked by `openssl cms -verify`, and each
 * revocation verdict by `openssl ocsp` or `openssl verify -crl_check` as well.
 */
import { readFileSync } from "node:fs";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign, tool } from "./helpers/cli.js";
import { LEAVES, makeRevocationPki, type LeafName, type RevocationPki } from "./helpers/revocation-pki.js";
import { opensslTsVerify, startTsa } from "./helpers/tsa.js";
import { createTestToken, publicKeyPem, type TestToken } from "./helpers/token.js";

const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";

let t: TestToken;
let pki: RevocationPki;
let data: string;
const sig = (name: LeafName) => path.join(t.dir, `${name}.p7s`);

beforeAll(async () => {
  t = await createTestToken();
  const dir = path.join(t.dir, "pki");
  await mkdir(dir);
  pki = await makeRevocationPki(dir, await publicKeyPem(t, "02"));
  data = path.join(t.dir, "app.tar.gz");
  await writeFile(data, "the release\n".repeat(1000));
  for (const name of Object.keys(LEAVES) as LeafName[]) {
    const r = await codesign(
      ["sign", "--pin-file", t.dev.pinFile, "--tool", "cms", "--key", EC].concat([
        "--cert",
        pki.leaf[name],
        "--chain",
        pki.int,
        "--in",
        data,
        "--out",
        sig(name),
      ]),
      { env: t.env },
    );
    if (r.exitCode !== 0) throw new Error(`signing with ${name} failed: ${r.stderr}`);
  }
}, 120_000);

afterAll(async () => {
  await pki?.close();
  await t?.cleanup();
});

const verify = (name: LeafName, extra: string[] = ["--online"]) =>
  codesign(["--json", "verify", "--in", data, "--signature", sig(name), "--ca", pki.root, ...extra]);

/** The independent check of the signature itself: openssl cms -verify, no revocation. */
async function opensslCms(name: LeafName, extra: string[] = [], ca = pki.root): Promise<number> {
  const r = await tool("openssl", [
    "cms",
    "-verify",
    "-binary",
    "-purpose",
    "any",
    "-inform",
    "DER",
    "-in",
    sig(name),
    "-content",
    data,
    "-CAfile",
    ca,
    "-out",
    "/dev/null",
    ...extra,
  ]);
  return r.exitCode;
}

/** openssl's OCSP client against a responder: "good", "revoked", or its error. */
async function opensslOcsp(name: LeafName, url: string): Promise<string> {
  const r = await tool("openssl", [
    "ocsp",
    "-issuer",
    pki.int,
    "-cert",
    pki.leaf[name],
    "-url",
    url,
    "-CAfile",
    pki.root,
  ]);
  return `${r.stdout}\n${r.stderr}`;
}

/** openssl verify with the intermediate's CRL: exit 0 when not revoked. */
async function opensslCrl(name: LeafName): Promise<{ code: number; out: string }> {
  const r = await tool("openssl", [
    "verify",
    "-crl_check",
    "-CAfile",
    pki.root,
    "-untrusted",
    pki.int,
    "-CRLfile",
    pki.intCrlPem,
    pki.leaf[name],
  ]);
  return { code: r.exitCode, out: `${r.stdout}${r.stderr}` };
}

describe("verify --online", () => {
  it("every signature is sound to openssl cms -verify (revocation aside)", async () => {
    for (const name of Object.keys(LEAVES) as LeafName[]) expect(await opensslCms(name), name).toBe(0);
  });

  it("a good certificate: valid, the leaf checked by OCSP and the intermediate by its CRL; openssl agrees", async () => {
    const r = await verify("good");
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { revocation: unknown[]; warnings: string[] };
    expect(report.revocation).toEqual([
      expect.objectContaining({
        chain: "signer",
        certificate: "O=Rev, CN=Leaf good",
        method: "ocsp",
        url: `${pki.url}/ocsp`,
        status: "good",
      }),
      expect.objectContaining({
        certificate: "CN=Rev Intermediate, O=Rev",
        method: "crl",
        url: `${pki.url}/root.crl`,
        status: "good",
      }),
    ]);
    expect(report.warnings).toEqual([]);
    expect(await opensslOcsp("good", pki.responderUrl)).toMatch(
      /^(?=[\s\S]*Response verify OK)[\s\S]*\.pem: good/,
    );
    expect(await opensslCrl("good")).toMatchObject({ code: 0 });
  });

  it("a response signed by the issuer itself (no delegated responder) is accepted", async () => {
    const r = await verify("direct");
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      revocation: [{ certificate: "O=Rev, CN=Leaf direct", method: "ocsp", url: `${pki.url}/ocsp-ca` }, {}],
    });
    expect(await opensslOcsp("direct", `${pki.url}/ocsp-ca`)).toMatch(
      /^(?=[\s\S]*Response verify OK)[\s\S]*\.pem: good/,
    );
  });

  it("revoked, by OCSP: exit 6 naming the certificate and the time; openssl ocsp says revoked", async () => {
    const r = await verify("revokedOcsp");
    expect(r.exitCode, r.stderr).toBe(6);
    expect(r.stderr).toMatch(
      /revoked certificate: O=Rev, CN=Leaf revokedOcsp \(revoked \d{4}-\d\d-\d\dT[^)]*\), by OCSP/,
    );
    expect(await opensslOcsp("revokedOcsp", pki.responderUrl)).toMatch(/: revoked/);
    // without --online nothing is asked: the signature itself is sound
    expect((await verify("revokedOcsp", [])).exitCode).toBe(0);
  });

  it("revoked, by the CRL only: exit 6; openssl verify -crl_check and openssl cms -crl_check agree", async () => {
    const r = await verify("revokedCrl");
    expect(r.exitCode, r.stderr).toBe(6);
    expect(r.stderr).toMatch(
      /revoked certificate: O=Rev, CN=Leaf revokedCrl .*the CRL at http:\/\/127\.0\.0\.1:\d+\/int\.crl/,
    );
    const o = await opensslCrl("revokedCrl");
    expect(o.code).not.toBe(0);
    expect(o.out).toMatch(/certificate revoked/);
    // the same CRL given as a file (--crl) without --online: the same verdict
    const file = await verify("revokedCrl", ["--crl", pki.intCrlPem]);
    expect(file.exitCode, file.stderr).toBe(6);
    expect((await verify("revokedCrl", [])).exitCode).toBe(0);
    // openssl cms takes CRLs from the CAfile
    const rootAndCrl = path.join(t.dir, "root-and-crl.pem");
    await writeFile(rootAndCrl, (await readFile(pki.root, "utf8")) + (await readFile(pki.intCrlPem, "utf8")));
    expect(await opensslCms("revokedCrl", ["-crl_check"], rootAndCrl)).not.toBe(0);
    expect(await opensslCms("good", ["-crl_check"], rootAndCrl)).toBe(0);
  });

  it("Authenticode: the signer chain codesign validates gets the same checks (--crl, --online); osslsigncode verify judges the file", async () => {
    const script = path.join(t.dir, "tool.ps1");
    await writeFile(script, 'Write-Output "release"\r\n');
    const signed = (name: LeafName) => path.join(t.dir, `${name}.signed.ps1`);
    for (const name of ["good", "revokedCrl"] as const) {
      // codesign signs the good one; osslsigncode's attach-signature fetches the CDP itself and
      // refuses a revoked signer, so the revoked one is signed by osslsigncode with the same key.
      const certs = path.join(t.dir, `${name}-certs.pem`);
      await writeFile(certs, [pki.leaf[name], pki.int].map((f) => readFileSync(f, "utf8")).join(""));
      const s =
        name === "good"
          ? await codesign(
              ["sign", "--pin-file", t.dev.pinFile, "--key", EC, "--cert", pki.leaf[name]].concat([
                "--chain",
                pki.int,
                "--chain",
                pki.root,
                "--in",
                script,
                "--out",
                signed(name),
              ]),
              { env: t.env },
            )
          : await tool(
              "osslsigncode",
              ["sign", "-pkcs11module", t.module, "-key", EC, "-readpass", t.dev.pinFile].concat([
                "-certs",
                certs,
                "-h",
                "sha256",
                "-in",
                script,
                "-out",
                signed(name),
              ]),
              { env: t.env },
            );
      expect(s.exitCode, s.stdout + s.stderr).toBe(0);
      // osslsigncode verify: the signature is sound; for the revoked one it refuses, as it fetched the CRL
      const o = await tool("osslsigncode", ["verify", "-in", signed(name), "-CAfile", pki.root]);
      expect(o.exitCode, o.stdout + o.stderr).toBe(name === "good" ? 0 : 1);
      if (name !== "good") expect(o.stdout + o.stderr).toMatch(/certificate revoked/);
    }
    const check = (name: LeafName, extra: string[]) =>
      codesign(["--json", "verify", "--in", signed(name), "--ca", pki.root, ...extra]);
    const byFile = await check("revokedCrl", ["--crl", pki.intCrlPem]);
    expect(byFile.exitCode, byFile.stderr).toBe(6);
    expect(byFile.stderr).toMatch(/revoked certificate: O=Rev, CN=Leaf revokedCrl/);
    const online = await check("revokedCrl", ["--online"]);
    expect(online.exitCode, online.stderr).toBe(6);
    const good = await check("good", ["--online"]);
    expect(good.exitCode, good.stderr).toBe(0);
    const report = JSON.parse(good.stdout) as { revocation?: Array<{ method: string; status: string }> };
    expect(report.revocation?.some((r) => r.method === "ocsp" && r.status === "good")).toBe(true);
  });

  it("raw with --cert and --ca: the same online check (revoked by OCSP: exit 6; good: valid); openssl dgst agrees on the signature", async () => {
    const raw = path.join(t.dir, "app.sig");
    const s = await codesign(
      ["sign", "--pin-file", t.dev.pinFile, "--tool", "raw", "--key", EC, "--in", data, "--out", raw],
      {
        env: t.env,
      },
    );
    expect(s.exitCode, s.stderr).toBe(0);
    const pub = await publicKeyPem(t, "02");
    expect(
      (await tool("openssl", ["dgst", "-sha256", "-verify", pub, "-signature", raw, data])).stdout,
    ).toContain("Verified OK");
    const withChain = async (name: LeafName) => {
      const file = path.join(t.dir, `${name}.chain.pem`);
      await writeFile(file, (await readFile(pki.leaf[name], "utf8")) + (await readFile(pki.int, "utf8")));
      return codesign([
        "--json",
        "verify",
        "--in",
        data,
        "--signature",
        raw,
        "--cert",
        file,
        "--ca",
        pki.root,
        "--online",
      ]);
    };
    const revoked = await withChain("revokedOcsp");
    expect(revoked.exitCode, revoked.stderr).toBe(6);
    expect(revoked.stderr).toMatch(/revoked certificate: O=Rev, CN=Leaf revokedOcsp/);
    const good = await withChain("good");
    expect(good.exitCode, good.stderr).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({
      kind: "raw",
      trusted: true,
      revocation: [{ method: "ocsp" }, { method: "crl" }],
    });
  });

  it("the responder and the distribution point are down: exit 6, naming both URLs", async () => {
    const r = await verify("down");
    expect(r.exitCode, r.stderr).toBe(6);
    expect(r.stderr).toMatch(/could not check revocation of O=Rev, CN=Leaf down in the signer chain/);
    expect(r.stderr).toMatch(
      /OCSP http:\/\/127\.0\.0\.1:\d+\/ocsp: \S+.*CRL http:\/\/127\.0\.0\.1:\d+\/int\.crl: \S+/,
    );
  });

  it("no AIA and no CDP: valid, with a warning that revocation was not checked", async () => {
    const r = await verify("bare");
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { revocation: unknown[]; warnings: string[] };
    expect(report.warnings).toEqual([
      expect.stringMatching(/no revocation information for O=Rev, CN=Leaf bare/),
    ]);
    expect(report.revocation).toContainEqual(
      expect.objectContaining({ certificate: "O=Rev, CN=Leaf bare", method: "none", status: "unchecked" }),
    );
  });

  it("a forged OCSP response (signed by a key the CA never certified): exit 6; openssl ocsp refuses it too", async () => {
    const r = await verify("forged");
    expect(r.exitCode, r.stderr).toBe(6);
    expect(r.stderr).toMatch(/could not check revocation.*not certified by CN=Rev Intermediate, O=Rev/);
    expect(await opensslOcsp("forged", `${pki.url}/forged`)).toMatch(/Response Verify Failure/i);
  });

  it("a certificate the responder does not know (status unknown), and no CDP: exit 6; openssl ocsp says unknown", async () => {
    const r = await verify("unknown");
    expect(r.exitCode, r.stderr).toBe(6);
    expect(r.stderr).toMatch(
      /could not check revocation of O=Rev, CN=Leaf unknown.*does not know the certificate/,
    );
    expect(await opensslOcsp("unknown", pki.responderUrl)).toMatch(/\.pem: unknown/);
  });

  it("HTTP 500 from the responder and an 11 MiB CRL: exit 6 naming both, the CRL cut at 10 MiB", async () => {
    const r = await verify("broken");
    expect(r.exitCode, r.stderr).toBe(6);
    expect(r.stderr).toMatch(/OCSP http:\/\/127\.0\.0\.1:\d+\/http500: HTTP 500/);
    expect(r.stderr).toMatch(
      /CRL http:\/\/127\.0\.0\.1:\d+\/huge\.crl: the answer is (\d+ bytes, )?over the 10485760-byte limit/,
    );
  });

  it("a timestamped signature: the TSA chain is checked too (its certificate names no source: a warning)", async () => {
    const tsa = await startTsa("good");
    try {
      const out = path.join(t.dir, "stamped.p7s");
      const s = await codesign(
        ["sign", "--pin-file", t.dev.pinFile, "--tool", "cms", "--key", EC, "--cert", pki.leaf.good].concat([
          "--chain",
          pki.int,
          "--timestamp",
          tsa.url,
          "--tsa-ca",
          tsa.caFile,
          "--in",
          data,
          "--out",
          out,
        ]),
        { env: t.env },
      );
      expect(s.exitCode, s.stderr).toBe(0);
      await opensslTsVerify(out, tsa);
      const r = await codesign([
        "--json",
        "verify",
        "--in",
        data,
        "--signature",
        out,
        "--ca",
        pki.root,
        "--ca",
        tsa.caFile,
        "--online",
      ]);
      expect(r.exitCode, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as {
        revocation: unknown[];
        warnings: string[];
        timestamps: unknown[];
      };
      expect(report.timestamps).toEqual([expect.objectContaining({ trusted: true })]);
      expect(report.revocation).toContainEqual(expect.objectContaining({ chain: "TSA", method: "none" }));
      expect(report.revocation).toContainEqual(
        expect.objectContaining({ chain: "signer", certificate: "O=Rev, CN=Leaf good", method: "ocsp" }),
      );
      expect(report.warnings).toEqual([
        expect.stringMatching(/no revocation information for .* in the TSA chain/),
      ]);
    } finally {
      await tsa.close();
    }
  });

  it("verify --tree --online: the revoked file fails the gate, the good ones pass; each URL asked once", async () => {
    const tree = path.join(t.dir, "tree");
    await mkdir(tree);
    for (const [file, name] of [
      ["good", "good"],
      ["good-too", "good"],
      ["revokedCrl", "revokedCrl"],
    ] as const) {
      await copyFile(data, path.join(tree, `${file}.tar.gz`));
      await copyFile(sig(name), path.join(tree, `${file}.tar.gz.p7s`));
    }
    const before = {
      ocsp: pki.hits("POST /ocsp"),
      root: pki.hits("GET /root.crl"),
      int: pki.hits("GET /int.crl"),
    };
    const r = await codesign(["--json", "verify", "--tree", tree, "--ca", pki.root, "--online"]);
    expect(pki.hits("POST /ocsp") - before.ocsp).toBe(1);
    expect(pki.hits("GET /root.crl") - before.root).toBe(1);
    expect(pki.hits("GET /int.crl") - before.int).toBe(1);
    expect(r.exitCode, r.stderr).toBe(6);
    const rows = (JSON.parse(r.stdout) as { files: Array<{ path: string; status: string }> }).files;
    expect(rows).toContainEqual(expect.objectContaining({ path: "good.tar.gz", status: "valid" }));
    expect(rows).toContainEqual(expect.objectContaining({ path: "good-too.tar.gz", status: "valid" }));
    expect(rows).toContainEqual(expect.objectContaining({ path: "revokedCrl.tar.gz", status: "invalid" }));
  });
});
