import { chmod, readFile, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { createPublicKey, verify } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign, tool } from "./helpers/cli.js";
import { opensslDgstVerify } from "./helpers/verifiers.js";
import { addKeyWithPkcs11Tool, createTestToken, publicKeyPem, type TestToken } from "./helpers/token.js";

let t: TestToken;
let data: string;
const pubkeys: Record<string, string> = {};

beforeAll(async () => {
  t = await createTestToken();
  await addKeyWithPkcs11Tool(t, "EC:secp384r1", "03", "ec-p384");
  await addKeyWithPkcs11Tool(t, "EC:edwards25519", "04", "ed25519");
  for (const id of ["01", "02", "03", "04"]) pubkeys[id] = await publicKeyPem(t, id);
  data = path.join(t.dir, "payload.bin");
  await writeFile(data, Buffer.from("codesign test payload\n".repeat(1000)));
});

afterAll(async () => {
  await t?.cleanup();
});

async function signWith(object: string, extra: string[], out: string): Promise<void> {
  const r = await codesign(
    [
      "sign",
      "--tool",
      "raw",
      "--key",
      `pkcs11:token=codesign-dev;object=${object};type=private`,
      "--pin-file",
      t.dev.pinFile,
      "--in",
      data,
      "--out",
      out,
      ...extra,
    ],
    { env: t.env },
  );
  expect(r.stderr).not.toContain(t.pin);
  expect(r.stdout).not.toContain(t.pin);
  expect(r.exitCode, r.stderr).toBe(0);
}

describe("sign --tool raw, verified by openssl with the key read by pkcs11-tool", () => {
  for (const hash of ["sha256", "sha384", "sha512"]) {
    it(`RSA PKCS#1 v1.5 ${hash}`, async () => {
      const sig = path.join(t.dir, `rsa-${hash}.sig`);
      await signWith("rsa-2048", ["--hash", hash], sig);
      await opensslDgstVerify(pubkeys["01"] as string, data, sig, { hash });
    });
    it(`RSA-PSS ${hash}`, async () => {
      const sig = path.join(t.dir, `pss-${hash}.sig`);
      await signWith("rsa-2048", ["--hash", hash, "--mechanism", "rsa-pss"], sig);
      await opensslDgstVerify(pubkeys["01"] as string, data, sig, {
        hash,
        sigopts: ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"],
      });
    });
    it(`ECDSA P-256 ${hash}`, async () => {
      const sig = path.join(t.dir, `p256-${hash}.sig`);
      await signWith("ec-p256", ["--hash", hash], sig);
      await opensslDgstVerify(pubkeys["02"] as string, data, sig, { hash });
    });
    it(`ECDSA P-384 ${hash}`, async () => {
      const sig = path.join(t.dir, `p384-${hash}.sig`);
      await signWith("ec-p384", ["--hash", hash], sig);
      await opensslDgstVerify(pubkeys["03"] as string, data, sig, { hash });
    });
  }

  it("ECDSA in IEEE P1363 form (r‖s) verifies as such", async () => {
    const sig = path.join(t.dir, "p256.p1363");
    await signWith("ec-p256", ["--signature-format", "p1363"], sig);
    const bytes = await readFile(sig);
    expect(bytes.length).toBe(64);
    const key = createPublicKey(await readFile(pubkeys["02"] as string));
    expect(verify("sha256", await readFile(data), { key, dsaEncoding: "ieee-p1363" }, bytes)).toBe(true);
  });

  it("EdDSA (Ed25519) over the message", async () => {
    const sig = path.join(t.dir, "ed25519.sig");
    await signWith("ed25519", [], sig);
    const r = await tool("openssl", [
      "pkeyutl",
      "-verify",
      "-pubin",
      "-inkey",
      pubkeys["04"] as string,
      "-rawin",
      "-in",
      data,
      "-sigfile",
      sig,
    ]);
    expect(r.stdout.trim(), r.stderr).toBe("Signature Verified Successfully");
  });

  it("defaults the output to <in>.sig and prints a JSON report", async () => {
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--json",
        "--key",
        "pkcs11:token=codesign-dev;object=rsa-2048",
        "--pin-file",
        t.dev.pinFile,
        "--in",
        data,
      ],
      { env: t.env },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { files: unknown[] };
    expect(report).toMatchObject({ ok: true, tool: "raw", keyType: "rsa", signed: 1, failed: 0 });
    expect(report.files).toEqual([
      expect.objectContaining({
        input: data,
        output: `${data}.sig`,
        ok: true,
        scheme: "rsa-pkcs1",
        hash: "sha256",
      }),
    ]);
    expect(r.stdout).not.toContain(t.pin);
    await opensslDgstVerify(pubkeys["01"] as string, data, `${data}.sig`);
  });

  it("takes the PIN from CODESIGN_PIN", async () => {
    const sig = path.join(t.dir, "env-pin.sig");
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        "pkcs11:token=codesign-dev;object=ec-p256",
        "--in",
        data,
        "--out",
        sig,
      ],
      {
        env: { ...t.env, CODESIGN_PIN: t.pin },
      },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslDgstVerify(pubkeys["02"] as string, data, sig);
  });

  it("refuses a mechanism that does not fit the key (exit 2)", async () => {
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        "pkcs11:token=codesign-dev;object=ec-p256",
        "--pin-file",
        t.dev.pinFile,
        "--mechanism",
        "rsa-pss",
        "--in",
        data,
        "--out",
        path.join(t.dir, "x.sig"),
      ],
      { env: t.env },
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/the rsa-pss scheme does not fit this EC key/);
    expect(existsSync(path.join(t.dir, "x.sig"))).toBe(false);
  });
});

describe("failures are clear and lose nothing", () => {
  it("wrong PIN: exit 3, exactly one C_Login (pkcs11-spy), no retry, PIN not echoed", async () => {
    const bad = path.join(t.dir, "bad.pin");
    await writeFile(bad, "99999999\n", { mode: 0o600 });
    const spyLog = path.join(t.dir, "spy.log");
    const out = path.join(t.dir, "wrong-pin.sig");
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--module",
        "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
        "--key",
        "pkcs11:token=codesign-dev;object=rsa-2048",
        "--pin-file",
        bad,
        "--in",
        data,
        "--out",
        out,
      ],
      { env: { ...t.env, PKCS11SPY: t.module, PKCS11SPY_OUTPUT: spyLog } },
    );
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/PIN was rejected/);
    expect(r.stderr).toMatch(/does not retry/);
    expect(r.stderr).not.toContain("99999999");
    const log = await readFile(spyLog, "utf8");
    expect(log.match(/C_Login/g)?.length).toBe(1);
    expect(log).toMatch(/CKR_PIN_INCORRECT/);
    expect(log).toMatch(/C_Finalize/);
    expect(existsSync(out)).toBe(false);
  });

  it("missing key: exit 4 naming the key and the way to list keys", async () => {
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        "pkcs11:token=codesign-dev;object=nope;type=private",
        "--pin-file",
        t.dev.pinFile,
        "--in",
        data,
      ],
      { env: t.env },
    );
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/no private key with object=nope/);
    expect(r.stderr).toMatch(/codesign keys/);
  });

  it("missing token: exit 4 listing the tokens present", async () => {
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        "pkcs11:token=elsewhere;object=x",
        "--pin-file",
        t.dev.pinFile,
        "--in",
        data,
      ],
      {
        env: t.env,
      },
    );
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/no token matches/);
    expect(r.stderr).toMatch(/"codesign-dev"/);
  });

  it("missing module: exit 4", async () => {
    const r = await codesign(["tokens", "--module", "/nonexistent/libnothing.so"], { env: t.env });
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/PKCS#11 module not found: \/nonexistent\/libnothing.so/);
  });

  it("PIN file readable by others: refused with the chmod 600 fix, and no login", async () => {
    const loose = path.join(t.dir, "loose.pin");
    await writeFile(loose, `${t.pin}\n`);
    await chmod(loose, 0o644);
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        "pkcs11:token=codesign-dev;object=rsa-2048",
        "--pin-file",
        loose,
        "--in",
        data,
      ],
      {
        env: t.env,
      },
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`chmod 600 '${loose}'`);
    expect(r.stderr).not.toContain(t.pin);
  });

  it("PIN file with more than the PIN is refused", async () => {
    const multi = path.join(t.dir, "multi.pin");
    await writeFile(multi, `${t.pin}\nsecond line\n`, { mode: 0o600 });
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        "pkcs11:token=codesign-dev;object=rsa-2048",
        "--pin-file",
        multi,
        "--in",
        data,
      ],
      {
        env: t.env,
      },
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/more than one line/);
  });

  it("no PIN source and no terminal: exit 3 naming every option", async () => {
    const r = await codesign(
      ["sign", "--tool", "raw", "--key", "pkcs11:token=codesign-dev;object=rsa-2048", "--in", data],
      {
        env: t.env,
      },
    );
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/--pin-file/);
    expect(r.stderr).toMatch(/CODESIGN_PIN/);
    expect(r.stderr).toMatch(/pin-source/);
  });

  it("never signs its own input in place", async () => {
    const before = await readFile(data);
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        "pkcs11:token=codesign-dev;object=rsa-2048",
        "--pin-file",
        t.dev.pinFile,
        "--in",
        data,
        "--out",
        data,
      ],
      {
        env: t.env,
      },
    );
    expect(r.exitCode).toBe(2);
    expect(await readFile(data)).toEqual(before);
  });

  it("missing input file: exit 2 before any token work", async () => {
    const r = await codesign(
      [
        "sign",
        "--tool",
        "raw",
        "--key",
        "pkcs11:token=codesign-dev;object=rsa-2048",
        "--pin-file",
        t.dev.pinFile,
        "--in",
        path.join(t.dir, "absent"),
      ],
      {
        env: t.env,
      },
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/cannot read .*absent: ENOENT/);
  });

  it("a malformed URI is a usage error (exit 2) without a stack trace", async () => {
    const r = await codesign(["sign", "--tool", "raw", "--key", "pkcs11:token=%zz", "--in", data], {
      env: t.env,
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
