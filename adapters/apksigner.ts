/**
 * apksigner (Android's v1 + v2 + v3 APK signature schemes) with a SunPKCS11 keystore. Like
 * jarsigner it logs in itself: the generated config names the token's slot, the PIN goes by
 * `--ks-pass env:VAR`, and the alias is the keystore entry SunPKCS11 made for the key — named
 * after the certificate's CKA_LABEL, not the key's — found by asking `keytool -list` for the
 * entry whose certificate is the signer's. On Java 17 apksigner needs sun.security.pkcs11
 * exported to it; the `-J` flag must come before `sign`.
 */
import { X509Certificate, createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { SignJob, SigningAdapter } from "./contract.js";
import { CodesignError } from "../src/core/errors.js";
import { sunpkcs11Config } from "../templates/sunpkcs11.js";
import { findTool, lastWords, oncePerKey, runToolRaw } from "./run.js";
import { safePath } from "./osslsigncode.js";
import { sunpkcs11Alias } from "./jarsigner.js";
import { readCertificates } from "../src/core/pki/certificate.js";

const PIN_VAR = "CODESIGN_APK_PIN";
export const JAVA17_EXPORT = "-J-add-exports=jdk.crypto.cryptoki/sun.security.pkcs11=ALL-UNNAMED";

const version = oncePerKey(async (toolPath?: string): Promise<string> => {
  const file = findTool("apksigner", toolPath);
  const out = await runToolRaw({ tool: "apksigner", file, args: ["--version"] });
  const v = /(\d+(?:\.\d+)+)/.exec(`${out.stdout}${out.stderr}`)?.[1];
  if (out.exitCode !== 0 || !v) {
    throw new CodesignError("TOOL_FAILED", `cannot tell the version of ${file}: ${lastWords(out)}`, {
      hint: "install apksigner (Debian package apksigner), or give its location with --tool-path",
    });
  }
  return v;
});

const configPath = (job: SignJob) => path.join(job.workDir, "sunpkcs11.cfg");

/** The SHA-256 fingerprint of a PEM certificate, as keytool prints it (AA:BB:…) and apksigner (aabb…). */
export async function certificateSha256(pemFile: string): Promise<string> {
  const cert = new X509Certificate(await readFile(pemFile));
  return createHash("sha256").update(cert.raw).digest("hex");
}

function args(job: SignJob): string[] {
  const alias = typeof job.options["alias"] === "string" ? job.options["alias"] : job.key.label;
  return [
    JAVA17_EXPORT,
    "sign",
    "--ks",
    "NONE",
    "--ks-type",
    "PKCS11",
    "--provider-class",
    "sun.security.pkcs11.SunPKCS11",
    "--provider-arg",
    configPath(job),
    "--ks-pass",
    `env:${PIN_VAR}`,
    "--ks-key-alias",
    alias,
    "--v1-signing-enabled",
    "true",
    "--v2-signing-enabled",
    "true",
    "--v3-signing-enabled",
    "true",
    "--out",
    safePath(job.output),
    safePath(job.input),
  ];
}

/** The keystore entry SunPKCS11 gives the signer, asked of keytool as for jarsigner. */
async function findAlias(job: SignJob): Promise<string> {
  const [certificate] = await readCertificates(job.certFile);
  if (!certificate) throw new CodesignError("INTERNAL", `no certificate in ${job.certFile}`);
  return sunpkcs11Alias({
    modulePath: job.modulePath,
    slot: Number(job.token.slotId),
    pin: job.pin,
    certificate,
    workDir: job.workDir,
  });
}

async function sign(job: SignJob) {
  if (!job.certOnToken) {
    throw new CodesignError("USAGE", "apksigner takes the certificate from the token, not from --cert", {
      hint: "store the certificate on the token with the key's CKA_ID",
    });
  }
  const file = findTool("apksigner", job.toolPath);
  await writeFile(
    configPath(job),
    sunpkcs11Config({ name: "codesign", library: job.modulePath, slot: Number(job.token.slotId) }),
    { mode: 0o600 },
  );
  const v = await version(job.toolPath);
  const alias = await findAlias(job);
  const out = await runToolRaw({
    tool: "apksigner",
    file,
    args: args({ ...job, options: { ...job.options, alias } }),
    pin: { secret: job.pin, via: "env", name: PIN_VAR },
  });
  if (out.exitCode !== 0) throw apksignerFailure(out);
  return { tool: "apksigner" as const, version: v };
}

/** apksigner fails with a Java stack trace: its message is the exception line, not the last lines. */
function apksignerFailure(out: { stdout: string; stderr: string; exitCode: number }): CodesignError {
  const text = `${out.stdout}\n${out.stderr}`;
  const reason =
    /^(?:Exception in thread "main" )?[\w.$]+(?:Exception|Error): (.+)$/m.exec(text)?.[1] ?? lastWords(out);
  const ecdsa = /ECDSA signatures only supported for minSdkVersion 18/.test(text);
  return new CodesignError("TOOL_FAILED", `apksigner failed (exit ${out.exitCode}): ${reason}`, {
    hint: ecdsa
      ? "an EC key needs an APK whose AndroidManifest.xml declares minSdkVersion 18 or higher; sign older APKs with an RSA key"
      : "the message above is apksigner's own; run with --debug for its full output",
    cause: new Error(text),
  });
}

export const adapter = { name: "apksigner", version, args, sign } satisfies SigningAdapter;

/**
 * `apksigner verify --print-certs`: the APK verifies and, when `certFile` is given, its (first)
 * signer is that certificate. Returns the schemes apksigner reports as verified.
 */
export async function verifyApk(
  input: string,
  o: { certFile?: string | undefined; toolPath?: string | undefined },
): Promise<{ tool: string; output: string; schemes: string[] }> {
  const file = findTool("apksigner", o.toolPath);
  const out = await runToolRaw({
    tool: "apksigner",
    file,
    args: ["verify", "--verbose", "--print-certs", safePath(input)],
  });
  const text = `${out.stdout}\n${out.stderr}`;
  if (out.exitCode !== 0 || !/^Verifies$/m.test(text)) {
    throw new CodesignError(
      "VERIFY_FAILED",
      `apksigner verify: ${input} does not verify: ${lastWords(out, 3)}`,
      {
        hint: "sign it with codesign sign --tool apksigner",
      },
    );
  }
  if (o.certFile) {
    const want = await certificateSha256(o.certFile);
    const got = /^Signer #1 certificate SHA-256 digest: ([0-9a-f]+)$/m.exec(text)?.[1];
    if (got !== want) {
      throw new CodesignError(
        "VERIFY_FAILED",
        `apksigner verify: ${input} is signed by another certificate`,
        {
          hint: "check the key the APK was signed with",
        },
      );
    }
  }
  const schemes = [...text.matchAll(/^Verified using (v\d(?:\.\d)?) scheme .*: true$/gm)].map(
    (m) => m[1] ?? "",
  );
  return { tool: "apksigner", output: text, schemes };
}
