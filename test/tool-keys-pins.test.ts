/**
 * The tools that log in themselves, against what SunPKCS11 and libp11 really do: jarsigner's alias
 * is the name SunPKCS11 gives the entry (asked of keytool), -certchain carries the CA chain, and
 * PINs a tool cannot take are refused before codesign's own login — proven by pkcs11-spy.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign, tool } from "./helpers/cli.js";
import { openssl } from "./helpers/pki.js";
import { countLogins, createTestToken, PKCS11_SPY, type TestToken } from "./helpers/token.js";
import { jarsignerVerify, opensslDgstVerify } from "./helpers/verifiers.js";

let t: TestToken;
let dir: string;
let jar: string;
let root: string;
let chain: string;

async function must(file: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await tool(file, args, { env: { ...t.env, ...env }, cwd: dir });
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** pkcs11-tool on a token of this store, the PIN by environment. */
const p11 = (token: string, pin: string, args: string[]) =>
  must(
    "pkcs11-tool",
    ["--module", t.module, "--token-label", token, "--login", "--pin", "env:TEST_PIN", ...args],
    {
      TEST_PIN: pin,
    },
  );

/** An EC key on `token` (label optional) and, unless `cert` is false, a certificate the test CA issued for it. */
async function keyWithCert(
  token: string,
  pin: string,
  id: string,
  o: { label?: string; certLabel?: string; cert?: boolean; store?: boolean },
) {
  await p11(token, pin, [
    "--keypairgen",
    "--key-type",
    "EC:prime256v1",
    "--id",
    id,
    ...(o.label ? ["--label", o.label] : []),
  ]);
  if (o.cert === false) return;
  const pubDer = path.join(dir, `pub-${token}-${id}.der`);
  await must("pkcs11-tool", [
    "--module",
    t.module,
    "--token-label",
    token,
    "--read-object",
    "--type",
    "pubkey",
    "--id",
    id,
    "-o",
    pubDer,
  ]);
  const pub = path.join(dir, `pub-${token}-${id}.pem`);
  await openssl(["pkey", "-pubin", "-inform", "DER", "-in", pubDer, "-out", pub], dir);
  await openssl(
    ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"].concat([
      "-keyout",
      "throwaway.key",
      "-subj",
      `/CN=Signer ${id}`,
      "-out",
      `${id}.csr`,
    ]),
    dir,
  );
  const leaf = path.join(dir, `leaf-${token}-${id}.der`);
  await openssl(
    ["x509", "-req", "-in", `${id}.csr`, "-CA", "int.pem", "-CAkey", "int.key", "-force_pubkey", pub].concat([
      "-extfile",
      "ext.cnf",
      "-extensions",
      "leaf",
      "-days",
      "30",
      "-outform",
      "DER",
      "-out",
      leaf,
    ]),
    dir,
  );
  if (o.store === false) return;
  await p11(token, pin, [
    "--write-object",
    leaf,
    "--type",
    "cert",
    "--id",
    id,
    ...(o.certLabel ? ["--label", o.certLabel] : []),
  ]);
}

beforeAll(async () => {
  t = await createTestToken();
  dir = path.join(t.dir, "work");
  await mkdir(path.join(dir, "classes"), { recursive: true });
  await writeFile(path.join(dir, "classes", "hello.txt"), "hello\n");
  jar = path.join(dir, "app.jar");
  await must("jar", ["cf", jar, "-C", path.join(dir, "classes"), "."]);
  await writeFile(
    path.join(dir, "ext.cnf"),
    [
      "[ca]",
      "basicConstraints = critical,CA:TRUE",
      "keyUsage = critical,keyCertSign,cRLSign",
      "[leaf]",
      "basicConstraints = CA:FALSE",
      "keyUsage = critical,digitalSignature",
      "extendedKeyUsage = codeSigning",
      "",
    ].join("\n"),
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl(
    ["req", "-x509", ...ec, "-keyout", "root.key", "-subj", "/CN=Test Root"].concat([
      "-days",
      "30",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      "-out",
      "root.pem",
    ]),
    dir,
  );
  await openssl(
    ["req", "-new", ...ec, "-keyout", "int.key", "-subj", "/CN=Test Intermediate", "-out", "int.csr"],
    dir,
  );
  await openssl(
    ["x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-extfile", "ext.cnf"].concat(
      ["-extensions", "ca", "-days", "30", "-out", "int.pem"],
    ),
    dir,
  );
  root = path.join(dir, "root.pem");
  // What a CA hands out as the chain: the intermediate, then the root.
  chain = path.join(dir, "chain.pem");
  await writeFile(
    chain,
    `${await readFile(path.join(dir, "int.pem"), "utf8")}${await readFile(root, "utf8")}`,
  );
}, 180_000);

afterAll(async () => {
  await t?.cleanup();
});

const TOKEN = "codesign-dev";

/** `jarsigner -verify -verbose -certs`: who signed the jar. */
async function jarSigner(file: string): Promise<string> {
  const r = await tool("jarsigner", ["-verify", "-verbose", "-certs", file]);
  return r.stdout;
}

describe("jarsigner: the alias SunPKCS11 gives, the CA chain, and keys it cannot see", () => {
  const signJar = (key: string, out: string, extra: string[] = []) =>
    codesign(
      [
        "sign",
        "--tool",
        "jarsigner",
        "--pin-file",
        t.dev.pinFile,
        "--key",
        key,
        "--chain",
        chain,
        "--in",
        jar,
        "--out",
        out,
        ...extra,
      ],
      {
        env: t.env,
      },
    );

  it("a key whose certificate has another label, issued by a CA: verifies with only the root trusted", async () => {
    await keyWithCert(TOKEN, t.pin, "31", { label: "jar-key", certLabel: "jar-cert" });
    const out = path.join(dir, "label-differs.jar");
    const r = await signJar("pkcs11:token=codesign-dev;object=jar-key;type=private", out);
    expect(r.exitCode, r.stderr).toBe(0);
    await jarsignerVerify(out, root);
    expect(await jarSigner(out)).toMatch(/CN=Signer 31/);
  });

  it("a key with no label (SunPKCS11 names it after its CKA_ID)", async () => {
    await keyWithCert(TOKEN, t.pin, "32", {});
    const out = path.join(dir, "no-label.jar");
    const r = await signJar("pkcs11:token=codesign-dev;id=%32;type=private", out);
    expect(r.exitCode, r.stderr).toBe(0);
    await jarsignerVerify(out, root);
    expect(await jarSigner(out)).toMatch(/CN=Signer 32/);
  });

  it("two keys sharing a label: each signs with its own certificate", async () => {
    await keyWithCert(TOKEN, t.pin, "33", { label: "dup", certLabel: "dup" });
    await keyWithCert(TOKEN, t.pin, "34", { label: "dup", certLabel: "dup" });
    for (const id of ["33", "34"]) {
      const out = path.join(dir, `dup-${id}.jar`);
      const r = await signJar(`pkcs11:token=codesign-dev;object=dup;id=%${id};type=private`, out);
      expect(r.exitCode, r.stderr).toBe(0);
      await jarsignerVerify(out, root);
      const who = await jarSigner(out);
      expect(who).toMatch(new RegExp(`CN=Signer ${id}`));
      expect(who).not.toMatch(new RegExp(`CN=Signer ${id === "33" ? "34" : "33"}`));
    }
  });

  it("no certificate on the token: exit 4 with the hint, before jarsigner runs, nothing written", async () => {
    await keyWithCert(TOKEN, t.pin, "35", { label: "bare", store: false });
    const out = path.join(dir, "bare.jar");
    const r = await signJar("pkcs11:token=codesign-dev;object=bare;type=private", out);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/--cert FILE|on the token/);
    expect(existsSync(out)).toBe(false);
    // --cert alone does not help: SunPKCS11 still does not show the key
    const withCert = await signJar("pkcs11:token=codesign-dev;object=bare;type=private", out, [
      "--cert",
      path.join(dir, "leaf-codesign-dev-35.der"),
    ]);
    expect(withCert.exitCode).toBe(4);
    expect(existsSync(out)).toBe(false);
  });
});

/** A token of its own with a PIN the tools may not take, one key with a certificate on it. */
async function tokenWithPin(label: string, pin: string): Promise<void> {
  await must("softhsm2-util", [
    "--init-token",
    "--free",
    "--label",
    label,
    "--so-pin",
    "12345678",
    "--pin",
    pin,
  ]);
  await keyWithCert(label, pin, "01", { label: "k", certLabel: "k" });
}

describe("PINs a tool cannot take: refused before any login, or they work; no tool login fails", () => {
  const NON_ASCII = "pïn-ünïcødé-42";
  const LONG = "0123456789abcdefghij0123456789ABCDEFGHIJ"; // 40 characters
  const runs: Array<{ tool: "jarsigner" | "openssl"; pin: string; outcome: "works" | "refused" }> = [
    { tool: "jarsigner", pin: NON_ASCII, outcome: "refused" },
    { tool: "jarsigner", pin: LONG, outcome: "works" },
    { tool: "openssl", pin: NON_ASCII, outcome: "works" },
    { tool: "openssl", pin: LONG, outcome: "refused" },
  ];
  beforeAll(async () => {
    await tokenWithPin("nonascii", NON_ASCII);
    await tokenWithPin("long", LONG);
  }, 120_000);

  for (const run of runs) {
    const label = run.pin === LONG ? "long" : "nonascii";
    it(`${run.tool} with a ${label === "long" ? "40-character" : "non-ASCII"} PIN: ${run.outcome}`, async () => {
      const spyLog = path.join(dir, `spy-${run.tool}-${label}.log`);
      await rm(spyLog, { force: true });
      const pinFile = path.join(dir, `${label}.pin`);
      await writeFile(pinFile, run.pin, { mode: 0o600 });
      const input = run.tool === "jarsigner" ? jar : path.join(dir, "data.bin");
      if (run.tool === "openssl") await writeFile(input, "data for the engine\n");
      const out = path.join(dir, `out-${run.tool}-${label}${run.tool === "jarsigner" ? ".jar" : ".sig"}`);
      const r = await codesign(
        ["sign", "--tool", run.tool, "--module", PKCS11_SPY, "--pin-file", pinFile].concat([
          "--key",
          `pkcs11:token=${label};object=k;type=private`,
          "--chain",
          chain,
          "--in",
          input,
          "--out",
          out,
        ]),
        { env: { ...t.env, PKCS11SPY: t.module, PKCS11SPY_OUTPUT: spyLog } },
      );
      expect(r.stderr).not.toContain(run.pin);
      const logins = existsSync(spyLog)
        ? countLogins(await readFile(spyLog, "utf8"))
        : { user: 0, context: 0, so: 0, failed: 0 };
      expect(logins.failed).toBe(0);
      if (run.outcome === "refused") {
        expect(r.exitCode).toBe(2);
        expect(r.stderr).toMatch(new RegExp(`${run.tool} cannot log in with this PIN`));
        expect(r.stderr).toMatch(
          run.tool === "jarsigner" ? /one byte per PIN character/ : /at most 32 bytes/,
        );
        expect(logins.user).toBe(0);
        expect(existsSync(out)).toBe(false);
      } else {
        expect(r.exitCode, r.stderr).toBe(0);
        expect(logins.user).toBeGreaterThanOrEqual(2); // codesign's, then the tool's own
        if (run.tool === "jarsigner") await jarsignerVerify(out, root);
        else await opensslDgstVerify(pubOf(label), input, out);
      }
    });
  }

  it("config openssl-engine --embed-pin: a PIN with # $ \\ quotes and spaces, a module path with $ and #, read back by openssl", async () => {
    const pin = `a#b$c"d\\e 'f $HOME `;
    await tokenWithPin("special", pin);
    const pinFile = path.join(dir, "special.pin");
    await writeFile(pinFile, pin, { mode: 0o600 });
    const odd = path.join(dir, "mod$HOME#x");
    await mkdir(odd, { recursive: true });
    const module = path.join(odd, "softhsm $x.so");
    await symlink(t.module, module);
    const cnf = path.join(dir, "engine.cnf");
    const key = "pkcs11:token=special;object=k;type=private";
    const c = await codesign(
      [
        "config",
        "openssl-engine",
        "--key",
        key,
        "--module",
        module,
        "--embed-pin",
        "--pin-file",
        pinFile,
        "--out",
        cnf,
      ],
      { env: t.env },
    );
    expect(c.exitCode, c.stderr).toBe(0);
    const data = path.join(dir, "special.bin");
    await writeFile(data, "signed with a config holding an awkward PIN\n");
    const sig = `${data}.sig`;
    // No -passin: the engine takes the PIN (and the module) from the generated config alone.
    await must(
      "openssl",
      ["dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine", "-sign", key, "-out", sig, data],
      {
        OPENSSL_CONF: cnf,
      },
    );
    await opensslDgstVerify(pubOf("special"), data, sig);
  });
});

/** The public key keyWithCert read from the token (by pkcs11-tool) for key 01 of `token`. */
const pubOf = (token: string): string => path.join(dir, `pub-${token}-01.pem`);
