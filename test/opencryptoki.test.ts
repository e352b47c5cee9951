/**
 * A second real module: opencryptoki's soft token, with its own pkcsslotd started and stopped
 * here. Raw, CMS and Authenticode (.ps1 through osslsigncode) signatures, each checked by the
 * independent verifier.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign } from "./helpers/cli.js";
import { startOpencryptoki, type OpencryptokiToken } from "./helpers/opencryptoki.js";
import { opensslCmsVerify, opensslDgstVerify, osslsigncodeVerify } from "./helpers/verifiers.js";
import { tool } from "./helpers/cli.js";

let ock: OpencryptokiToken;
let env: Record<string, string>;
let key: string;
let cert: string;
let pub: string;

beforeAll(async () => {
  ock = await startOpencryptoki();
  env = { CODESIGN_PKCS11_MODULE: ock.module, CODESIGN_PIN: ock.pin };
  key = `pkcs11:token=${ock.label};object=ock-rsa;type=private`;
  cert = path.join(ock.dir, "cert.pem");
  pub = path.join(ock.dir, "pub.pem");
  const r = await codesign(
    ["cert", "selfsign", "--key", key, "--subject", "CN=opencryptoki test", "--out", cert, "--store"],
    {
      env,
    },
  );
  expect(r.exitCode, r.stderr).toBe(0);
  const p = await tool("openssl", ["x509", "-in", cert, "-pubkey", "-noout", "-out", pub]);
  expect(p.exitCode, p.stderr).toBe(0);
}, 30_000);

afterAll(async () => {
  await ock?.cleanup();
});

describe("opencryptoki soft token", () => {
  it("lists the token and its key (no session limit it could plan with)", async () => {
    const r = await codesign(["tokens", "--json"], { env });
    expect(r.exitCode, r.stderr).toBe(0);
    const t = (
      JSON.parse(r.stdout) as { tokens: Array<{ label: string; maxSessions?: number }> }
    ).tokens.find((x) => x.label === ock.label);
    expect(t).toBeDefined();
    expect(t?.maxSessions).toBeUndefined();
    const k = await codesign(["keys", "--json"], { env });
    expect(k.exitCode, k.stderr).toBe(0);
    expect(k.stdout).toContain('"alwaysAuthenticate": false');
  });

  it("raw signatures verify with openssl dgst, also a batch on 4 sessions", async () => {
    const dir = path.join(ock.dir, "raw");
    await mkdir(dir, { recursive: true });
    const files = [];
    for (let i = 0; i < 8; i++) {
      const f = path.join(dir, `f${i}.bin`);
      await writeFile(f, `opencryptoki ${i}\n`);
      files.push(f);
    }
    const r = await codesign(["sign", "--tool", "raw", "--key", key, "--jobs", "4", ...files], { env });
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of files) await opensslDgstVerify(pub, f, `${f}.sig`);
  });

  it("CMS verifies with openssl cms (certificate read from the token)", async () => {
    const f = path.join(ock.dir, "doc.txt");
    await writeFile(f, "a document\n");
    const r = await codesign(["sign", "--tool", "cms", "--key", key, f], { env });
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslCmsVerify(`${f}.p7s`, cert, { content: f });
  });

  it("Authenticode: osslsigncode signs a .ps1 through the module and verifies it", async () => {
    const f = path.join(ock.dir, "script.ps1");
    const out = path.join(ock.dir, "script.signed.ps1");
    await writeFile(f, 'Write-Host "signed by opencryptoki"\r\n');
    const r = await codesign(["sign", "--tool", "osslsigncode", "--key", key, "--out", out, f], { env });
    expect(r.exitCode, r.stderr).toBe(0);
    await osslsigncodeVerify(out, cert);
  });
});
