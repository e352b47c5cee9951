/**
 * The embedded default: a private SoftHSM2 token with an RSA-2048 and a P-256 key, each with a
 * self-signed code-signing certificate on the token, and its PIN in a 0600 file. Made entirely
 * through PKCS#11 (C_InitToken, C_InitPIN, C_GenerateKeyPair), so no PIN is ever on a command line.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { pemEncode } from "../pki/asn1.js";
import { CodesignError } from "../errors.js";
import { writeFileAtomic } from "../util/files.js";
import { findPrivateKey, readCertificate } from "./keys.js";
import { readPinFile, Secret } from "./pin.js";
import { type Pkcs11Module, withModule, withSession } from "./module.js";
import { TokenKeySigner } from "./token-signer.js";
import { generateKeyPair, type KeySpec, storeCertificate } from "./token-objects.js";
import { keyUri, parseUri } from "./uri.js";
import { createSelfSignedCertificate } from "../pki/x509.js";

export const DEV_TOKEN_LABEL = "codesign-dev";
export const DEFAULT_DEV_TOKEN_DIR = path.join(".codesign", "dev-token");

const DEV_KEYS: Array<{ label: string; id: Uint8Array; spec: KeySpec; subject: string }> = [
  {
    label: "rsa-2048",
    id: Uint8Array.of(1),
    spec: { type: "rsa", bits: 2048 },
    subject: "CN=codesign dev RSA,O=codesign dev token",
  },
  {
    label: "ec-p256",
    id: Uint8Array.of(2),
    spec: { type: "ec", curve: "P-256" },
    subject: "CN=codesign dev EC,O=codesign dev token",
  },
];

export interface DevToken {
  dir: string;
  /** Value for SOFTHSM2_CONF. */
  config: string;
  module: string;
  pinFile: string;
  token: string;
  keys: Array<{ label: string; uri: string; certificate: string }>;
  created: boolean;
}

export function softhsmModulePath(): string {
  const found = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
  ].find((p) => existsSync(p));
  if (!found) {
    throw new CodesignError("MODULE_NOT_FOUND", "SoftHSM2 is not installed (libsofthsm2.so not found)", {
      hint: "install it: apt-get install softhsm2",
    });
  }
  return found;
}

function layout(dir: string): { config: string; tokens: string; pinFile: string; soPinFile: string } {
  const abs = path.resolve(dir);
  return {
    config: path.join(abs, "softhsm2.conf"),
    tokens: path.join(abs, "tokens"),
    pinFile: path.join(abs, "user.pin"),
    soPinFile: path.join(abs, "so.pin"),
  };
}

function describe(dir: string, module: string, created: boolean): DevToken {
  const l = layout(dir);
  return {
    dir: path.resolve(dir),
    config: l.config,
    module,
    pinFile: l.pinFile,
    token: DEV_TOKEN_LABEL,
    keys: DEV_KEYS.map((k) => ({
      label: k.label,
      uri: keyUri({ token: DEV_TOKEN_LABEL, object: k.label, type: "private" }),
      certificate: path.join(path.resolve(dir), `${k.label}.pem`),
    })),
    created,
  };
}

async function initialiseToken(m: Pkcs11Module, soPin: Secret, userPin: Secret): Promise<void> {
  const free = m.tokens().find((t) => !t.flags.includes("token-initialized"));
  if (!free) throw new CodesignError("TOKEN_ERROR", "SoftHSM2 offers no free slot to initialise");
  try {
    // CK_UTF8CHAR[32], blank-padded: pkcs11js would pad with NULs, which p11-kit and
    // GnuTLS then see as part of the label.
    m.p11.C_InitToken(free.handle, soPin.reveal(), DEV_TOKEN_LABEL.padEnd(32, " "));
  } catch (e) {
    throw new CodesignError("TOKEN_ERROR", `C_InitToken failed: ${(e as Error).message}`, { cause: e });
  }
  // SoftHSM2 moves the new token to a new slot id: look it up again by label.
  const token = m.selectToken(parseUri(`pkcs11:token=${DEV_TOKEN_LABEL}`));
  await withSession(
    m,
    token,
    (s) => {
      s.login(soPin, "so");
      try {
        s.p11.C_InitPIN(s.handle, userPin.reveal());
      } finally {
        s.logout();
      }
    },
    { readWrite: true },
  );
}

async function ensureKeys(m: Pkcs11Module, userPin: Secret, dir: string): Promise<void> {
  const token = m.selectToken(parseUri(`pkcs11:token=${DEV_TOKEN_LABEL}`));
  const mechanisms = m.mechanisms(token);
  await withSession(
    m,
    token,
    async (s) => {
      s.login(userPin);
      try {
        for (const k of DEV_KEYS) {
          const uri = parseUri(keyUri({ object: k.label, id: k.id, type: "private" }));
          let key;
          try {
            key = findPrivateKey(s, mechanisms, uri);
          } catch (e) {
            if (!(e instanceof CodesignError && e.code === "KEY_NOT_FOUND")) throw e;
            generateKeyPair(s, k.spec, k.label, k.id);
            key = findPrivateKey(s, mechanisms, uri);
          }
          let cert = readCertificate(s, k.id);
          if (!cert) {
            cert = await createSelfSignedCertificate(new TokenKeySigner(s, key, mechanisms), {
              subject: k.subject,
              days: 3650,
            });
            storeCertificate(s, cert, k.label, k.id);
          }
          await writeFileAtomic(path.join(dir, `${k.label}.pem`), pemEncode("CERTIFICATE", cert));
        }
      } finally {
        s.logout();
      }
    },
    { readWrite: true },
  );
}

/** Creates the dev token (or completes and reuses an existing one: running twice is harmless). */
export async function initDevToken(dir: string = DEFAULT_DEV_TOKEN_DIR): Promise<DevToken> {
  const module = softhsmModulePath();
  const l = layout(dir);
  await mkdir(l.tokens, { recursive: true, mode: 0o700 });
  const created = !existsSync(l.pinFile);
  if (created) {
    await writeFileAtomic(
      l.config,
      `# codesign dev token: a private SoftHSM2 store. Use with: export SOFTHSM2_CONF=${l.config}\n` +
        `directories.tokendir = ${l.tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
    );
    await writeFileAtomic(l.soPinFile, randomBytes(12).toString("hex"), { mode: 0o600 });
    await writeFileAtomic(l.pinFile, randomBytes(8).toString("hex"), { mode: 0o600 });
  }
  const userPin = new Secret(readPinFile(l.pinFile, "the dev token"), "--pin-file");
  const soPin = new Secret(readPinFile(l.soPinFile, "the dev token"), "--pin-file");
  // SoftHSM2 reads its configuration at C_Initialize; this process is the only one that needs it now.
  process.env["SOFTHSM2_CONF"] = l.config;
  await withModule(module, async (m) => {
    if (m.matchingTokens(parseUri(`pkcs11:token=${DEV_TOKEN_LABEL}`)).length === 0) {
      await initialiseToken(m, soPin, userPin);
    }
    await ensureKeys(m, userPin, path.resolve(dir));
  });
  return describe(dir, module, created);
}

export async function removeDevToken(dir: string = DEFAULT_DEV_TOKEN_DIR): Promise<boolean> {
  const l = layout(dir);
  try {
    await stat(l.config);
  } catch {
    return false;
  }
  await rm(path.resolve(dir), { recursive: true, force: true });
  return true;
}
