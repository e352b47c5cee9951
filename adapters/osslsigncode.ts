/**
 * osslsigncode shapes Authenticode files and never touches the token: `extract-data` gives the
 * SpcIndirectDataContent to sign (PE including EFI, MSI, CAB, CAT, APPX, PowerShell), codesign
 * signs it in-process, and `attach-signature` puts the finished PKCS#7 into a copy of the file.
 * osslsigncode is never given a module, a key URI or a PIN.
 */
import { X509Certificate } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { ShapingAdapter, ToolSignatureReport } from "./contract.js";
import { CodesignError } from "../src/core/errors.js";
import { certificatePem } from "../src/core/pki/certificate.js";
import { SYSTEM_BUNDLES } from "../src/core/pki/path.js";
import type { HashName } from "../src/core/signer.js";
import { findTool, lastWords, oncePerKey, runTool, runToolRaw } from "./run.js";
import { withPrivateDir } from "../src/core/util/temp.js";

/** A path a tool can never read as an option, whatever the file is called. */
export const safePath = (p: string): string => path.resolve(p);

const version = oncePerKey(async (toolPath?: string): Promise<string> => {
  const file = findTool("osslsigncode", toolPath);
  const out = await runToolRaw({ tool: "osslsigncode", file, args: ["--version"] });
  const v = /osslsigncode\s+(\d+)\.(\d+)/.exec(`${out.stdout}${out.stderr}`);
  if (!v) throw new CodesignError("TOOL_FAILED", `cannot tell the version of ${file}: ${lastWords(out)}`);
  const [major, minor] = [Number(v[1]), Number(v[2])];
  // extract-data and attach-signature (and PowerShell scripts) arrived in 2.6.
  if (major < 2 || (major === 2 && minor < 6)) {
    throw new CodesignError(
      "TOOL_FAILED",
      `osslsigncode ${major}.${minor} is too old: signing through the token needs extract-data and attach-signature (2.6 or newer)`,
      {
        hint: "install osslsigncode 2.9 from bookworm-backports: apt-get install -t bookworm-backports osslsigncode",
      },
    );
  }
  return `${major}.${minor}`;
});

/** `osslsigncode extract-data`: the unsigned PKCS#7 (DER) holding what must be signed for `input`. */
async function extractData(o: {
  input: string;
  hash: HashName;
  output: string;
  toolPath?: string | undefined;
}): Promise<void> {
  const file = findTool("osslsigncode", o.toolPath);
  await runTool({
    tool: "osslsigncode",
    file,
    args: ["extract-data", "-h", o.hash, "-in", safePath(o.input), "-out", safePath(o.output)],
  });
}

/**
 * `osslsigncode attach-signature`: a copy of `input` with `signature` (DER PKCS#7) in it, at
 * `output`. The output keeps the input's extension: scripts are told apart by it.
 * osslsigncode 2.9 also verifies the attached signature's chain and exits 1 when it does not
 * chain to its -CAfile ("unable to get local issuer certificate"). That check is not the one
 * codesign relies on (verify judges the chain); `caFile` is written by `writeAttachTrust`.
 */
async function attachSignature(o: {
  input: string;
  signature: string;
  output: string;
  hash: HashName;
  caFile: string;
  nest?: boolean;
  toolPath?: string | undefined;
}): Promise<void> {
  const file = findTool("osslsigncode", o.toolPath);
  const out = await runTool({
    tool: "osslsigncode",
    file,
    args: [
      "attach-signature",
      "-sigin",
      safePath(o.signature),
      "-CAfile",
      safePath(o.caFile),
      "-h",
      o.hash,
      ...(o.nest ? ["-nest"] : []),
      "-in",
      safePath(o.input),
      "-out",
      safePath(o.output),
    ],
  }).catch((e: unknown) => {
    const said = e instanceof CodesignError && e.cause instanceof Error ? e.cause.message : "";
    if (
      /unable to get (local )?issuer certificate|self.signed certificate in certificate chain/i.test(said)
    ) {
      throw new CodesignError(
        "CERT_NOT_FOUND",
        "osslsigncode attaches a signature only when the signer's chain reaches a root it is given, and no root was found",
        {
          hint: "give the whole chain up to its root with --chain (each intermediate and the root certificate)",
          cause: e,
        },
      );
    }
    throw e;
  });
  const text = `${out.stdout}\n${out.stderr}`;
  // osslsigncode exits 0 in both cases, having written the file: the caller's temp is dropped.
  if (o.nest && /Unsupported nesting/i.test(text)) {
    throw new CodesignError(
      "USAGE",
      `osslsigncode cannot nest signatures in ${path.basename(o.input)}: it would replace the existing one`,
      {
        hint: "catalog (.cat) and APPX/MSIX files hold one signature; replace it instead, or leave the file",
      },
    );
  }
  if (/MISMATCH/.test(text)) {
    throw new CodesignError(
      "VERIFY_FAILED",
      `the signature does not match ${path.basename(o.input)}: osslsigncode reports a digest mismatch after attaching it`,
      { hint: "the signature was made for another file (or another version of it); sign this file again" },
    );
  }
}

/**
 * The -CAfile for attach-signature, written once a run: attach verifies the signer's chain up to
 * a root in it before it writes the file, so it holds the signer and every certificate the
 * signature carries (--chain) and — only when none of them is a root — the system's roots, so a
 * chain from a public CA attaches even when --chain stops at the intermediate. (osslsigncode
 * reads the whole file for each attach: the system bundle costs ~8 ms a file.)
 */
export async function writeAttachTrust(dest: string, certificates: readonly Uint8Array[]): Promise<void> {
  const selfIssued = (der: Uint8Array): boolean => {
    try {
      const c = new X509Certificate(der);
      return c.subject === c.issuer;
    } catch {
      return false;
    }
  };
  const roots = certificates.some(selfIssued) ? "" : await systemRoots();
  await writeFile(dest, [...certificates.map(certificatePem), roots].join("\n"), { mode: 0o600 });
}

/** The system's trusted roots as PEM (read once a run), or nothing where there is no bundle. */
const systemRoots = oncePerKey(async (): Promise<string> => {
  for (const bundle of SYSTEM_BUNDLES) {
    const text = await readFile(bundle, "utf8").catch(() => undefined);
    if (text !== undefined) return text;
  }
  return "";
});

export const adapter = {
  name: "osslsigncode",
  version,
  extractData,
  attachSignature,
} satisfies ShapingAdapter;

/**
 * `osslsigncode extract-signature`: the file's existing Authenticode signature (DER PKCS#7, with
 * any nested ones) written to `output`; false when the file has none.
 * Asking the tool itself decides "already signed" the way it reads every format it knows.
 */
export async function extractSignature(o: {
  input: string;
  output: string;
  toolPath?: string | undefined;
}): Promise<boolean> {
  const file = findTool("osslsigncode", o.toolPath);
  const out = await runToolRaw({
    tool: "osslsigncode",
    file,
    args: ["extract-signature", "-in", safePath(o.input), "-out", safePath(o.output)],
  });
  if (out.exitCode === 0) return true;
  // Each file format says it in its own words (osslsigncode 2.9: pe/script/cab/cat, msi, appx).
  if (
    /No signature found|MSI file has no signature|AppxSignature\.p7x does not exist/i.test(
      `${out.stdout}\n${out.stderr}`,
    )
  )
    return false;
  throw new CodesignError(
    "TOOL_FAILED",
    `osslsigncode extract-signature cannot read ${o.input} (exit ${out.exitCode}): ${lastWords(out)}`,
    {
      hint: "check that osslsigncode can sign this file type",
      cause: new Error(`${out.stdout}\n${out.stderr}`),
    },
  );
}

/** `osslsigncode verify`, read by its words; throws VERIFY_FAILED with them when not valid. */
export async function verifyAuthenticode(
  input: string,
  o: { caFiles: string[]; toolPath?: string | undefined },
): Promise<{ tool: string; output: string; signatures: ToolSignatureReport[] }> {
  const file = findTool("osslsigncode", o.toolPath);
  // osslsigncode takes one CA file: several --ca files are joined in a private copy. The same
  // anchors judge the timestamps (-TSA-CAfile), with the system store for public TSAs.
  const out = await withPrivateDir(async (dir) => {
    let ca: string[] = [];
    if (o.caFiles.length > 0) {
      const pems = await Promise.all(o.caFiles.map((f) => readFile(f, "utf8")));
      const joined = path.join(dir, "ca.pem");
      await writeFile(joined, pems.join("\n"));
      const tsa = path.join(dir, "tsa-ca.pem");
      const system = await readFile(SYSTEM_BUNDLE, "utf8").catch(() => "");
      await writeFile(tsa, [...pems, system].join("\n"));
      ca = ["-CAfile", joined, "-TSA-CAfile", tsa];
    }
    return runToolRaw({ tool: "osslsigncode", file, args: ["verify", ...ca, "-in", safePath(input)] });
  }, "codesign-verify-");
  const text = `${out.stdout}\n${out.stderr}`;
  const signatures = parseAuthenticodeVerify(text);
  // osslsigncode ends "Succeeded" when ANY signature verifies: every one must.
  const failed = signatures.filter((s) => !s.trusted);
  if (out.exitCode !== 0 || !/^Succeeded/m.test(text) || signatures.length === 0 || failed.length > 0) {
    const which = failed.map(
      (s) => `signature ${s.index}${s.signer ? ` (${s.signer})` : ""}: ${s.problem ?? "failed"}`,
    );
    throw new CodesignError(
      "VERIFY_FAILED",
      `osslsigncode verify: ${input} is not validly signed: ${which.length > 0 ? which.join("; ") : lastWords(out, 3)}`,
      {
        hint: /No signature found/i.test(text)
          ? "the file is not signed"
          : "every signature (the primary and each nested one) must verify; give the signers' CA with --ca FILE",
      },
    );
  }
  return { tool: "osslsigncode", output: text, signatures };
}

/** Where osslsigncode itself looks for TSA roots when not told (Debian). */
const SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/**
 * Splits `osslsigncode verify` output (2.x) into its per-signature blocks ("Signature Index: N")
 * and reads each: signer subject, digest, timestamp, and whether it verified ("Signature
 * verification: ok", matching digests, no "Error:" line).
 */
export function parseAuthenticodeVerify(text: string): ToolSignatureReport[] {
  const parts = text.split(/^Signature Index: (\d+)/m);
  const out: ToolSignatureReport[] = [];
  for (let i = 1; i + 1 < parts.length; i += 2) {
    const block = parts[i + 1] ?? "";
    const current = /Current message digest\s*:\s*([0-9A-F]+)/i.exec(block)?.[1];
    const calculated = /Calculated message digest\s*:\s*([0-9A-F]+)/i.exec(block)?.[1];
    const verified = /^Signature verification: ok\s*$/m.test(block);
    const error = /^\s*Error: (.+)$/m.exec(block)?.[1];
    const digestOk = current !== undefined && current === calculated;
    const signer = /Signer's certificate:[\s\S]*?Subject: (.+)/.exec(block)?.[1]?.trim();
    const hash = /Message digest algorithm\s*:\s*(\S+)/.exec(block)?.[1];
    const timestamp = /(?:Timestamp time|The signature is timestamped)\s*:\s*(.+)/.exec(block)?.[1]?.trim();
    const trusted = verified && digestOk && !error;
    out.push({
      index: Number(parts[i]),
      ...(signer ? { signer } : {}),
      ...(hash ? { hash } : {}),
      ...(timestamp ? { timestamp } : {}),
      trusted,
      ...(trusted
        ? {}
        : { problem: error ?? (digestOk ? "signature verification failed" : "message digest mismatch") }),
    });
  }
  return out;
}
