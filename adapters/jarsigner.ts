/**
 * jarsigner with a SunPKCS11 keystore (Java 9+ `-addprovider SunPKCS11 -providerArg CFG`). The
 * generated config names the slot that holds the URI's token — never `slotListIndex`, which picks
 * whatever token comes first. The PIN goes by `-storepass:env`. The alias is the name SunPKCS11
 * itself gives the entry (the certificate's CKA_LABEL, a longer unique form when labels collide,
 * the CKA_ID when there is no label): keytool is asked once per run and the entry whose
 * certificate is the signer's is taken. `-certchain` always carries the signer and the --chain
 * certificates, so a verifier holding only the root accepts the JAR.
 */
import { writeFile, rm } from "node:fs/promises";
import type { Secret } from "../src/core/pkcs11/pin.js";
import { certificatePem, readCertificates } from "../src/core/pki/certificate.js";
import path from "node:path";
import type { SignJob, SigningAdapter } from "./contract.js";
import { CodesignError } from "../src/core/errors.js";
import { tryEach } from "../src/core/util/failover.js";
import type { HashName, KeyType } from "../src/core/signer.js";
import { sunpkcs11Config } from "../templates/sunpkcs11.js";
import { findTool, lastWords, oncePerKey, runTool, runToolRaw } from "./run.js";
import { withPrivateDir } from "../src/core/util/temp.js";
import { safePath } from "./osslsigncode.js";

const PIN_VAR = "CODESIGN_JAR_PIN";

export function sigalg(keyType: KeyType, hash: HashName): string {
  const h = hash.toUpperCase();
  if (keyType === "rsa") return `${h}withRSA`;
  if (keyType === "ec") return `${h}withECDSA`;
  return "Ed25519";
}

const version = oncePerKey(async (toolPath?: string): Promise<string> => {
  // jarsigner has no --version; the JDK's java does, next to it.
  const file = findTool("jarsigner", toolPath);
  const java = path.join(path.dirname(file), "java");
  const out = await runToolRaw({ tool: "java", file: java, args: ["-version"] }).catch(() => undefined);
  const v = out ? /version "([^"]+)"/.exec(out.stderr)?.[1] : undefined;
  return v ?? "unknown";
});

const configPath = (job: SignJob) => path.join(job.workDir, "sunpkcs11.cfg");
const chainPath = (job: SignJob) => path.join(job.workDir, "certchain.pem");
/** The SunPKCS11 alias found by `sunpkcs11Alias`, else the key's label. */
const aliasOf = (job: SignJob): string =>
  typeof job.options["alias"] === "string" ? job.options["alias"] : job.key.label;

function args(job: SignJob, extra: { timestampUrl?: string } = {}): string[] {
  return [
    "-keystore",
    "NONE",
    "-storetype",
    "PKCS11",
    "-addprovider",
    "SunPKCS11",
    "-providerArg",
    configPath(job),
    `-storepass:env`,
    PIN_VAR,
    "-sigalg",
    sigalg(job.key.keyType, job.hash),
    "-digestalg",
    job.hash.replace("sha", "SHA-"),
    "-certchain",
    safePath(chainPath(job)),
    ...(extra.timestampUrl ? ["-tsa", extra.timestampUrl] : []),
    "-signedjar",
    safePath(job.output),
    safePath(job.input),
    aliasOf(job),
  ];
}

async function sign(job: SignJob) {
  const file = findTool("jarsigner", job.toolPath);
  await writeFile(
    configPath(job),
    sunpkcs11Config({ name: "codesign", library: job.modulePath, slot: Number(job.token.slotId) }),
    { mode: 0o600 },
  );
  const certs = [
    ...(await readCertificates(job.certFile)),
    ...(await Promise.all(job.chainFiles.map((f) => readCertificates(f)))).flat(),
  ];
  await writeFile(chainPath(job), certs.map(certificatePem).join(""), { mode: 0o600 });
  const v = await version(job.toolPath);
  const once = async (timestampUrl?: string, signal?: AbortSignal) => {
    const out = await runTool({
      tool: "jarsigner",
      file,
      args: args(job, timestampUrl ? { timestampUrl } : {}),
      pin: { secret: job.pin, via: "env", name: PIN_VAR },
      ...(signal ? { cancelSignal: signal } : {}),
    }).catch((e: unknown) => {
      if (e instanceof CodesignError && /Certificate chain not found|not found for/i.test(e.message)) {
        throw new CodesignError("CERT_NOT_FOUND", `${e.message}`, {
          hint: "SunPKCS11 only sees keys with a certificate object of the same CKA_ID on the token: store the certificate on the token (codesign cert selfsign --store, or import the CA-issued one with the key's id)",
        });
      }
      throw e;
    });
    if (/jar signed/i.test(out.stdout) === false && /warning/i.test(out.stdout) === false) {
      throw new CodesignError("TOOL_FAILED", `jarsigner did not report a signed jar: ${lastWords(out)}`);
    }
  };
  if (job.timestamps.length === 0) {
    await once();
    return { tool: "jarsigner" as const, version: v };
  }
  try {
    const { url } = await tryEach(job.timestamps, (u, signal) => once(u, signal), job.failover);
    return { tool: "jarsigner" as const, version: v, timestampUrl: url };
  } catch (e) {
    await rm(job.output, { force: true });
    throw e;
  }
}

export const adapter = { name: "jarsigner", version, args, sign } satisfies SigningAdapter;

/**
 * Why jarsigner cannot log in with this PIN, or undefined. SunPKCS11 turns each character into
 * one byte (no UTF-8): a non-ASCII PIN reaches the token as other bytes than codesign's own
 * login sent, and its login fails after ours succeeded — a failed try on the token's counter.
 */
export function jarsignerPinProblem(pin: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (/[^\u0000-\u007f]/.test(pin)) {
    return "SunPKCS11 sends one byte per PIN character, so a PIN with non-ASCII characters would be rejected by the token";
  }
  return undefined;
}

export interface KeystoreEntry {
  alias: string;
  type: string;
  /** DER of the entry's first certificate (the end entity), when keytool printed one. */
  certificate?: Buffer;
}

/** The entries of `keytool -list -rfc`: alias, entry type, first certificate. */
export function keystoreEntries(text: string): KeystoreEntry[] {
  const out: KeystoreEntry[] = [];
  for (const block of text.split(/^(?=Alias name: )/m)) {
    const alias = /^Alias name: (.*)$/m.exec(block)?.[1];
    if (alias === undefined) continue;
    const type = /^Entry type: (.*)$/m.exec(block)?.[1] ?? "";
    const pem = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(block)?.[1];
    out.push({
      alias,
      type,
      ...(pem ? { certificate: Buffer.from(pem.replace(/\s+/g, ""), "base64") } : {}),
    });
  }
  return out;
}

/**
 * The alias SunPKCS11 gives the key whose certificate is `certificate`, asked of keytool (the
 * source of truth: labels that collide get a longer unique alias, a missing label the CKA_ID).
 * keytool logs in with the PIN codesign's own login has just proved.
 */
export async function sunpkcs11Alias(o: {
  modulePath: string;
  slot: number;
  pin: Secret;
  certificate: Uint8Array;
  workDir: string;
  toolPath?: string | undefined;
}): Promise<string> {
  const keytool = path.join(path.dirname(findTool("jarsigner", o.toolPath)), "keytool");
  const cfg = path.join(o.workDir, "keytool-sunpkcs11.cfg");
  await writeFile(cfg, sunpkcs11Config({ name: "codesign", library: o.modulePath, slot: o.slot }), {
    mode: 0o600,
  });
  const out = await runTool({
    tool: "keytool",
    file: keytool,
    args: [
      "-list",
      "-rfc",
      "-keystore",
      "NONE",
      "-storetype",
      "PKCS11",
      "-addprovider",
      "SunPKCS11",
      "-providerArg",
      cfg,
      "-storepass:env",
      PIN_VAR,
    ],
    pin: { secret: o.pin, via: "env", name: PIN_VAR },
  });
  const wanted = Buffer.from(o.certificate);
  const entries = keystoreEntries(out.stdout);
  const match = entries.filter((e) => e.type === "PrivateKeyEntry" && e.certificate?.equals(wanted));
  const [entry] = match;
  if (!entry || match.length > 1) {
    throw new CodesignError(
      "CERT_NOT_FOUND",
      match.length > 1
        ? `SunPKCS11 shows ${match.length} keys with the signer's certificate (${match.map((e) => e.alias).join(", ")})`
        : "SunPKCS11 shows no key entry whose certificate is the signer's",
      {
        hint: `keytool lists: ${entries.map((e) => `${e.alias} (${e.type})`).join(", ") || "nothing"}; SunPKCS11 only shows a private key with a certificate object of the same CKA_ID`,
      },
    );
  }
  return entry.alias;
}

/**
 * `jarsigner -verify -strict`, read by its words (it exits 0 for an unsigned jar). With CA files,
 * they become the trust anchors through a throw-away PKCS#12 truststore in a private directory.
 */
export async function verifyJar(
  input: string,
  o: { caFiles: string[]; toolPath?: string | undefined },
): Promise<{ tool: string; output: string; signers: string[]; timestamps: string[]; warnings: string[] }> {
  const file = findTool("jarsigner", o.toolPath);
  return withPrivateDir(async (dir) => {
    const trust: string[] = [];
    if (o.caFiles.length > 0) {
      const store = path.join(dir, "trust.p12");
      const keytool = path.join(path.dirname(file), "keytool");
      // keytool imports one certificate a file: every certificate of every bundle gets its own.
      const certs = (await Promise.all(o.caFiles.map((f) => readCertificates(f)))).flat();
      for (const [i, der] of certs.entries()) {
        const ca = path.join(dir, `ca${i}.pem`);
        await writeFile(ca, certificatePem(der));
        await runTool({
          tool: "keytool",
          file: keytool,
          args: [
            "-importcert",
            "-noprompt",
            "-alias",
            `ca${i}`,
            "-file",
            safePath(ca),
            "-keystore",
            store,
            "-storetype",
            "PKCS12",
            "-storepass:env",
            "CODESIGN_TRUST_PASS",
          ],
          env: { CODESIGN_TRUST_PASS: TRUST_PASS },
        });
      }
      trust.push("-keystore", store, "-storetype", "PKCS12", "-storepass:env", "CODESIGN_TRUST_PASS");
    }
    const out = await runToolRaw({
      tool: "jarsigner",
      file,
      args: ["-verify", "-strict", "-verbose", ...trust, safePath(input)],
      env: { CODESIGN_TRUST_PASS: TRUST_PASS },
    });
    const text = `${out.stdout}\n${out.stderr}`;
    if (out.exitCode !== 0 || !/^jar verified\./m.test(text)) {
      const unsigned = /jar is unsigned/.test(text);
      throw new CodesignError(
        "VERIFY_FAILED",
        `jarsigner -verify -strict: ${input} ${unsigned ? "is not signed" : `does not verify: ${lastWords(out, 3)}`}`,
        {
          hint: unsigned
            ? "sign it with codesign sign --tool jarsigner"
            : "give the signer's CA with --ca FILE",
        },
      );
    }
    // Not everything signed: jarsigner still says "jar verified." for a deleted signed entry.
    const incomplete = JAR_INCOMPLETE.filter((re) => re.test(text));
    if (incomplete.length > 0) {
      throw new CodesignError(
        "VERIFY_FAILED",
        `jarsigner -verify -strict: ${input} is not wholly signed: ${incomplete
          .map((re) => re.exec(text)?.[0] ?? "")
          .join("; ")}`,
        { hint: "sign the jar again after its last change; entries were added or removed after signing" },
      );
    }
    return { tool: "jarsigner", output: text, ...jarDetails(text) };
  }, "codesign-verify-");
}

/** Protects nothing (the truststore holds public certificates); keytool insists on one. */
const TRUST_PASS = "codesign-truststore";

/** jarsigner's words for a jar whose signature does not cover what is in it. */
const JAR_INCOMPLETE = [
  /This jar contains signed entries for files that do not exist\./,
  /This jar contains unsigned entries which have not been integrity-checked\./,
  /This jar contains entries whose signer certificate is not yet valid\./,
  /This jar contains entries whose signer certificate has expired\./,
];

/** Signers, timestamps and the Warning: section of `jarsigner -verify -verbose`. */
function jarDetails(text: string): { signers: string[]; timestamps: string[]; warnings: string[] } {
  const uniq = (xs: string[]) => [...new Set(xs)];
  const signers = uniq([...text.matchAll(/^- Signed by "(.+)"$/gm)].map((m) => m[1] ?? ""));
  const timestamps = uniq(
    [...text.matchAll(/Timestamped by "(.+)" on (.+)$/gm)].map((m) => `${m[2] ?? ""} by ${m[1] ?? ""}`),
  );
  const section = /^Warning:\s*\n([\s\S]*?)(?:\n\s*\n|$)/m.exec(text)?.[1] ?? "";
  const warnings = section
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => `jarsigner: ${l}`);
  return { signers, timestamps, warnings };
}
