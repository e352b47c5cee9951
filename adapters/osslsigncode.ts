/**
 * osslsigncode: Authenticode for PE, MSI, CAB, CAT, APPX and scripts. The module goes in with
 * -pkcs11module (osslsigncode ≥ 2 loads it through libp11 itself), the key as its URI, the PIN
 * through -readpass on descriptor 3 (never -pass, which puts it on argv). A timestamp is added
 * afterwards with `osslsigncode add -ts`, tried across every URL.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { SignJob, SigningAdapter } from "./contract.js";
import { CodesignError } from "../src/core/errors.js";
import { tryEach } from "../src/core/util/failover.js";
import { findTool, lastWords, oncePerKey, runTool, runToolRaw } from "./run.js";
import { withPrivateDir } from "../src/core/util/temp.js";

/** A path a tool can never read as an option, whatever the file is called. */
export const safePath = (p: string): string => path.resolve(p);

const version = oncePerKey(async (toolPath?: string): Promise<string> => {
  const file = findTool("osslsigncode", toolPath);
  const out = await runToolRaw({ tool: "osslsigncode", file, args: ["--version"] });
  const v = /osslsigncode\s+(\d+)\.(\d+)/.exec(`${out.stdout}${out.stderr}`);
  if (!v) throw new CodesignError("TOOL_FAILED", `cannot tell the version of ${file}: ${lastWords(out)}`);
  if (Number(v[1]) < 2) {
    throw new CodesignError(
      "TOOL_FAILED",
      `osslsigncode ${v[1]}.${v[2]} is too old: -pkcs11module needs 2.0 or newer`,
      {
        hint: "install osslsigncode 2.x (Debian bookworm-backports has 2.9)",
      },
    );
  }
  return `${v[1]}.${v[2]}`;
});

function args(job: SignJob, extra: { timestampUrl?: string } = {}): string[] {
  return [
    "sign",
    "-pkcs11module",
    job.modulePath,
    "-key",
    job.keyUri,
    "-certs",
    safePath(job.certFile),
    ...job.chainFiles.flatMap((f) => ["-ac", safePath(f)]),
    "-h",
    job.hash,
    ...(job.description ? ["-n", job.description] : []),
    ...(job.url ? ["-i", job.url] : []),
    ...(extra.timestampUrl ? ["-ts", extra.timestampUrl] : []),
    "-readpass",
    "/dev/fd/3",
    "-in",
    safePath(job.input),
    "-out",
    safePath(job.output),
  ];
}

async function sign(job: SignJob) {
  const file = findTool("osslsigncode", job.toolPath);
  const v = await version(job.toolPath);
  const pin = { secret: job.pin, via: "fd3" as const };
  if (job.timestamps.length === 0) {
    await runTool({ tool: "osslsigncode", file, args: args(job), pin });
    return { tool: "osslsigncode" as const, version: v };
  }
  // Sign once, then timestamp the signed file: a failing TSA never costs another login.
  // osslsigncode tells scripts apart by their extension, so the intermediate file keeps the input's.
  const unstamped = path.join(
    path.dirname(path.resolve(job.output)),
    `.${path.basename(job.output)}.unstamped${path.extname(job.input)}`,
  );
  try {
    await runTool({ tool: "osslsigncode", file, args: args({ ...job, output: unstamped }), pin });
    const { url } = await tryEach(
      job.timestamps,
      async (tsUrl, signal) => {
        await rm(job.output, { force: true });
        await runTool({
          tool: "osslsigncode",
          file,
          args: [
            "add",
            "-ts",
            tsUrl,
            "-h",
            job.hash,
            "-in",
            safePath(unstamped),
            "-out",
            safePath(job.output),
          ],
          cancelSignal: signal,
        });
      },
      job.failover,
    );
    return { tool: "osslsigncode" as const, version: v, timestampUrl: url };
  } catch (e) {
    await rm(job.output, { force: true });
    throw e;
  } finally {
    await rm(unstamped, { force: true });
  }
}

export const adapter = { name: "osslsigncode", version, args, sign } satisfies SigningAdapter;

/** `osslsigncode verify`, read by its words; throws VERIFY_FAILED with them when not valid. */
export async function verifyAuthenticode(
  input: string,
  o: { caFiles: string[]; toolPath?: string | undefined },
): Promise<{ tool: string; output: string; signatures: AuthenticodeSignatureReport[] }> {
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

/** One signature as `osslsigncode verify` reported it: 0 is the primary, 1… nested ones. */
export interface AuthenticodeSignatureReport {
  index: number;
  signer?: string;
  hash?: string;
  timestamp?: string;
  /** The signature verified and its chain reached a trust anchor. */
  trusted: boolean;
  problem?: string;
}

/**
 * Splits `osslsigncode verify` output (2.x) into its per-signature blocks ("Signature Index: N")
 * and reads each: signer subject, digest, timestamp, and whether it verified ("Signature
 * verification: ok", matching digests, no "Error:" line).
 */
export function parseAuthenticodeVerify(text: string): AuthenticodeSignatureReport[] {
  const parts = text.split(/^Signature Index: (\d+)/m);
  const out: AuthenticodeSignatureReport[] = [];
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
