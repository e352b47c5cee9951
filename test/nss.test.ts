/**
 * NSS softokn, a real module that cannot start without an init string: through
 * $CODESIGN_PKCS11_MODULE_ARGS, and through a p11-kit module file's `x-init-reserved:` found by
 * `module-name=`. p11-kit reads no per-user config for root, so that part runs in a private mount
 * namespace with an overlay on /etc: the machine's /etc/pkcs11 is never touched.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, codesign, tool } from "./helpers/cli.js";
import { opensslCmsVerify, opensslDgstVerify } from "./helpers/verifiers.js";

const SOFTOKN = "/usr/lib/x86_64-linux-gnu/libsoftokn3.so";
const TOKEN = "NSS%20Certificate%20DB";
/** Appears only inside an init string; must never show up in any output. */
const MARKER = "initstring-marker-7f3a";

let dir: string;
let db: string;
let initArgs: string;
const pin = "nss-pin-1234";
const keys: Record<"rsa" | "ec", { id: string; cert: string; pub: string }> = {
  rsa: { id: "", cert: "", pub: "" },
  ec: { id: "", cert: "", pub: "" },
};

async function ok(file: string, args: string[]): Promise<string> {
  const r = await tool(file, args);
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(" ")}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** `%c6%5b…`: the key's CKA_ID as an RFC 7512 percent-encoded value. */
const pct = (hex: string) => hex.replace(/../g, (b) => `%${b}`);
const keyUri = (k: "rsa" | "ec", query = "") =>
  `pkcs11:token=${TOKEN};id=${pct(keys[k].id)};type=private${query}`;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "codesign-nss-"));
  db = path.join(dir, "db");
  await mkdir(db);
  const pwfile = path.join(dir, "pw");
  await writeFile(pwfile, `${pin}\n`, { mode: 0o600 });
  await writeFile(
    path.join(dir, "noise"),
    Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37) & 0xff)),
  );
  await ok("certutil", ["-N", "-d", `sql:${db}`, "-f", pwfile]);
  for (const [k, alg] of [
    ["rsa", ["-k", "rsa", "-g", "2048"]],
    ["ec", ["-k", "ec", "-q", "nistp256"]],
  ] as const) {
    await ok("certutil", [
      "-S",
      "-d",
      `sql:${db}`,
      "-f",
      pwfile,
      "-z",
      path.join(dir, "noise"),
      "-x",
      ...alg,
      "-n",
      `nss-${k}`,
      "-s",
      `CN=NSS ${k} test`,
      "-t",
      "u,u,u",
      "--keyUsage",
      "digitalSignature",
      "--extKeyUsage",
      "codeSigning",
    ]);
    keys[k].cert = path.join(dir, `${k}.pem`);
    keys[k].pub = path.join(dir, `${k}-pub.pem`);
    await ok("certutil", ["-L", "-d", `sql:${db}`, "-n", `nss-${k}`, "-a", "-o", keys[k].cert]);
    await ok("openssl", ["x509", "-in", keys[k].cert, "-pubkey", "-noout", "-out", keys[k].pub]);
  }
  // certutil -K: `< 0> rsa      c65b…344f   NSS Certificate DB:nss-rsa` (the id, read independently)
  const listing = await ok("certutil", ["-K", "-d", `sql:${db}`, "-f", pwfile]);
  for (const k of ["rsa", "ec"] as const) {
    const id = new RegExp(`^<\\s*\\d+>\\s+${k}\\s+([0-9a-f]{40})\\s+.*:nss-${k}$`, "m").exec(listing)?.[1];
    if (!id) throw new Error(`no ${k} key id in certutil -K:\n${listing}`);
    keys[k].id = id;
  }
  initArgs = `configdir='sql:${db}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=readOnly`;
}, 60_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const envWith = (args: string | undefined): Record<string, string> => ({
  CODESIGN_PKCS11_MODULE: SOFTOKN,
  CODESIGN_PIN: pin,
  ...(args === undefined ? {} : { CODESIGN_PKCS11_MODULE_ARGS: args }),
});

describe("NSS softokn through CODESIGN_PKCS11_MODULE_ARGS", () => {
  it("without an init string: CKR_ARGUMENTS_BAD with the init-string hint, not a network one", async () => {
    const r = await codesign(["tokens"], { env: envWith(undefined) });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/CKR_ARGUMENTS_BAD/);
    expect(r.stderr).toMatch(/CODESIGN_PKCS11_MODULE_ARGS/);
    expect(r.stderr).not.toMatch(/network|HTTP/);
  });

  it("a failing init string is never printed, not even with --debug or --json", async () => {
    const bad = `configdir='sql:/nonexistent/${MARKER}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=readOnly`;
    for (const args of [
      ["tokens", "--debug"],
      ["keys", "--json", "--debug"],
      ["sign", "--tool", "raw", "--debug", "--key", keyUri("rsa"), BIN],
    ]) {
      const r = await codesign(args, { env: envWith(bad) });
      expect(r.exitCode, args.join(" ")).not.toBe(0);
      expect(r.stderr).toMatch(/C_Initialize .* with the init string from CODESIGN_PKCS11_MODULE_ARGS/);
      expect(`${r.stdout}${r.stderr}`).not.toContain(MARKER);
    }
    const good = await codesign(["doctor", "--json", "--key", keyUri("rsa")], {
      env: envWith(`${initArgs} `),
    });
    expect(`${good.stdout}${good.stderr}`).not.toContain(db);
  });

  it("lists both keys by id (NSS private keys have no label)", async () => {
    const r = await codesign(["keys", "--json", "--token", `pkcs11:token=${TOKEN}`], {
      env: envWith(initArgs),
    });
    expect(r.exitCode, r.stderr).toBe(0);
    const listed = (
      JSON.parse(r.stdout) as { keys: Array<{ id: string; label: string; hasCertificate: boolean }> }
    ).keys;
    for (const k of ["rsa", "ec"] as const) {
      expect(listed.find((x) => x.id === keys[k].id)).toMatchObject({ label: "", hasCertificate: true });
    }
  });

  for (const k of ["rsa", "ec"] as const) {
    it(`${k}: raw and CMS signatures verify with openssl`, async () => {
      const f = path.join(dir, `${k}.txt`);
      await writeFile(f, `signed through NSS softokn (${k})\n`);
      const raw = await codesign(["sign", "--tool", "raw", "--key", keyUri(k), f], {
        env: envWith(initArgs),
      });
      expect(raw.exitCode, raw.stderr).toBe(0);
      await opensslDgstVerify(keys[k].pub, f, `${f}.sig`);
      const cms = await codesign(["sign", "--tool", "cms", "--key", keyUri(k), f], {
        env: envWith(initArgs),
      });
      expect(cms.exitCode, cms.stderr).toBe(0);
      await opensslCmsVerify(`${f}.p7s`, keys[k].cert, { content: f });
    });
  }
});

describe("NSS softokn through a p11-kit module file (x-init-reserved, module-name=)", () => {
  const NAME = "nss-codesign-test";

  /**
   * Runs codesign in a private mount namespace whose /etc is an overlay: /etc/pkcs11/modules
   * there holds only our module file, and nothing reaches the machine's /etc.
   */
  async function codesignWithRegistry(args: string[]) {
    const ns = await mkdtemp(path.join(os.tmpdir(), "codesign-nss-ns-"));
    try {
      await mkdir(path.join(ns, "upper"));
      await mkdir(path.join(ns, "work"));
      const moduleFile = path.join(ns, `${NAME}.module`);
      await writeFile(moduleFile, `module: ${SOFTOKN}\nx-init-reserved: ${initArgs}\n`);
      const script = [
        "set -e",
        `mount -t overlay overlay -o lowerdir=/etc,upperdir=${ns}/upper,workdir=${ns}/work /etc`,
        "rm -rf /etc/pkcs11/modules",
        "mkdir -p /etc/pkcs11/modules",
        `cp ${moduleFile} /etc/pkcs11/modules/`,
        'exec node "$@"',
      ].join("\n");
      return await tool(
        "unshare",
        ["-m", "--propagation", "private", "sh", "-c", script, "sh", BIN, ...args],
        {
          env: {
            NO_COLOR: "1",
            CODESIGN_PIN: pin,
            CODESIGN_PKCS11_MODULE: "",
            CODESIGN_PKCS11_MODULE_ARGS: "",
          },
        },
      );
    } finally {
      await rm(ns, { recursive: true, force: true });
    }
  }

  it("module-name= finds the file and its x-init-reserved: raw and CMS verify", async () => {
    const f = path.join(dir, "registry.txt");
    await writeFile(f, "signed through a p11-kit registered NSS module\n");
    const query = `?module-name=${NAME}`;
    const raw = await codesignWithRegistry(["sign", "--tool", "raw", "--key", keyUri("rsa", query), f]);
    expect(raw.exitCode, raw.stderr).toBe(0);
    await opensslDgstVerify(keys.rsa.pub, f, `${f}.sig`);
    const cms = await codesignWithRegistry(["sign", "--tool", "cms", "--key", keyUri("ec", query), f]);
    expect(cms.exitCode, cms.stderr).toBe(0);
    await opensslCmsVerify(`${f}.p7s`, keys.ec.cert, { content: f });
  });

  it("p11-kit-proxy itself loads the same file (the line is in the form p11-kit reads)", async () => {
    const r = await codesignWithRegistry(["tokens", "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('"label": "NSS Certificate DB"');
  });

  it("the machine's registry is untouched", async () => {
    const r = await tool("sh", ["-c", `ls /etc/pkcs11/modules 2>/dev/null; true`]);
    expect(r.stdout).not.toContain(NAME);
  });
});
