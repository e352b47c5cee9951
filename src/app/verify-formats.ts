/**
 * Authenticode and JAR verification: each file is judged twice, and must pass both.
 * - The format's own tool (osslsigncode verify; jarsigner -verify -strict) checks what only it
 *   knows — that the signed digest is the file's, that every entry is signed — and its chain.
 * - codesign's own path validation and code-signing policy (the ones CMS and raw signatures go
 *   through: path.ts, policy.ts, the timestamp checks in verify.ts) judge every signature in the
 *   file: the primary and each nested Authenticode signature, every JAR signer.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import * as pkijs from "pkijs";
import * as yauzl from "yauzl";
import type { ToolSignatureReport } from "../../adapters/contract.js";
import { verifyJar } from "../../adapters/jarsigner.js";
import { extractSignature, verifyAuthenticode } from "../../adapters/osslsigncode.js";
import { CodesignError, isCodesignError } from "../core/errors.js";
import {
  authenticodeSignatures,
  judgeAuthenticodeSignature,
  type AuthenticodeSignatureJudgement,
} from "../core/pki/authenticode.js";
import { ATTACHED_MAX_BYTES, parseSignedData } from "../core/pki/cms.js";
import { signatureBlocks } from "../core/pki/jar.js";
import { certDer, loadAnchors, type Anchors } from "../core/pki/path.js";
import type { Revocation } from "../core/pki/revocation.js";
import {
  findSignerCertificate,
  verifyCms,
  type TimestampReport,
  type VerifyPurpose,
} from "../core/pki/verify.js";
import { readRegularFile } from "../core/util/files.js";
import { withPrivateDir } from "../core/util/temp.js";

/** One signature of an Authenticode file or one JAR signer: the tool's words and codesign's verdict. */
export interface FormatSignatureReport extends ToolSignatureReport {
  /** codesign's validated path, signer first, trust anchor last. */
  chain?: string[];
  /** The time the certificates were judged at: a trusted timestamp's, else the time of verifying. */
  checkedAt?: string;
  /** The timestamps codesign checked, each with its TSA and whether that TSA is trusted. */
  timestamps?: TimestampReport[];
  /** JAR: the signature block (`META-INF/<NAME>.RSA` …). */
  block?: string;
}

export interface FormatVerifyOptions {
  ca: readonly string[];
  purpose: VerifyPurpose;
  /** CRL files and online checks, one object for the whole verification (revocation.ts). */
  revocation?: Revocation | undefined;
  toolPath?: string | undefined;
}

export interface FormatVerdict {
  tool: string;
  signatures: FormatSignatureReport[];
  signers: string[];
  timestamps: string[];
  warnings: string[];
  /** Each signature's signer certificate (DER), in `signatures` order. */
  certificates: Uint8Array[];
}

/** The Authenticode signature written by `osslsigncode extract-signature` is bounded like a CMS. */
const SIGNATURE_MAX_BYTES = ATTACHED_MAX_BYTES + 1024 * 1024;
/** A signature block holds a SignedData with its certificates; a .SF lists the manifest's sections. */
const BLOCK_MAX_BYTES = 16 * 1024 * 1024;
const SF_MAX_BYTES = 64 * 1024 * 1024;

const damaged = (what: string, cause: unknown): CodesignError =>
  new CodesignError(
    "VERIFY_FAILED",
    `${what} is malformed: ${cause instanceof Error ? cause.message : String(cause)}`,
    { hint: "a damaged or crafted signature never verifies", cause },
  );

/** Runs both judges side by side; codesign's reason comes first when both refuse. */
async function both<T, U>(tool: Promise<T>, own: Promise<U>, toolName: string): Promise<{ tool: T; own: U }> {
  const [t, o] = await Promise.allSettled([tool, own]);
  if (o.status === "rejected") {
    const e = o.reason as unknown;
    if (t.status === "rejected" && isCodesignError(e) && isCodesignError(t.reason)) {
      throw new CodesignError(e.code, `${e.message} (${toolName} refuses it too: ${t.reason.message})`, {
        hint: e.hint ?? "",
        cause: e,
      });
    }
    throw e;
  }
  if (t.status === "rejected") throw t.reason;
  return { tool: t.value, own: o.value };
}

/** Anchors for TSAs: the --ca files and the system store (public TSAs chain there). */
function tsaAnchorsFor(ca: readonly string[], anchors: Anchors): () => Promise<Anchors> {
  let cached: Promise<Anchors> | undefined;
  return () => {
    cached ??=
      ca.length === 0
        ? Promise.resolve(anchors)
        : loadAnchors([]).then((system) => ({
            certs: [...anchors.certs, ...system.certs],
            source: `${anchors.source}, ${system.source}`,
          }));
    return cached;
  };
}

/** codesign's judgement of every signature in an Authenticode file (read by osslsigncode extract-signature). */
async function judgeAuthenticodeFile(
  input: string,
  o: FormatVerifyOptions,
): Promise<AuthenticodeSignatureJudgement[]> {
  const bytes = await withPrivateDir(async (dir) => {
    const out = path.join(dir, "signature.p7");
    let found: boolean;
    try {
      found = await extractSignature({ input, output: out, toolPath: o.toolPath });
    } catch (e) {
      // osslsigncode ran and could not read the signature it found: damaged, not a tool failure.
      if (isCodesignError(e) && e.code === "TOOL_FAILED")
        throw damaged(`the Authenticode signature in ${input}`, e);
      throw e;
    }
    if (!found) {
      throw new CodesignError("VERIFY_FAILED", `${input} is not signed`, {
        hint: "sign it with codesign sign",
      });
    }
    return readRegularFile(out, "the extracted signature", SIGNATURE_MAX_BYTES);
  }, "codesign-verify-");
  let signatures: pkijs.SignedData[];
  try {
    signatures = authenticodeSignatures(parseSignedData(bytes, `the signature in ${input}`));
  } catch (e) {
    if (isCodesignError(e) && e.code === "VERIFY_FAILED") throw e;
    throw damaged(`the Authenticode signature in ${input}`, e);
  }
  const anchors = await loadAnchors(o.ca);
  const tsaAnchors = tsaAnchorsFor(o.ca, anchors);
  const judged: AuthenticodeSignatureJudgement[] = [];
  const refused: string[] = [];
  let hint: string | undefined;
  for (const [index, signed] of signatures.entries()) {
    try {
      judged.push(
        await judgeAuthenticodeSignature(signed, index, {
          anchors,
          tsaAnchors,
          purpose: o.purpose,
          revocation: o.revocation,
        }),
      );
    } catch (e) {
      if (!isCodesignError(e)) throw damaged(`Authenticode signature ${index} in ${input}`, e);
      refused.push(e.message);
      hint ??= e.hint;
    }
  }
  if (refused.length > 0) {
    throw new CodesignError("VERIFY_FAILED", `${input} is not validly signed: ${refused.join("; ")}`, {
      hint: hint ?? "every signature (the primary and each nested one) must pass",
    });
  }
  return judged;
}

/** An Authenticode file: osslsigncode verify and codesign's own judgement of every signature. */
export async function verifyAuthenticodeFile(input: string, o: FormatVerifyOptions): Promise<FormatVerdict> {
  const { tool, own } = await both(
    verifyAuthenticode(input, { caFiles: [...o.ca], toolPath: o.toolPath }),
    judgeAuthenticodeFile(input, o),
    "osslsigncode verify",
  );
  if (tool.signatures.length !== own.length) {
    throw new CodesignError(
      "VERIFY_FAILED",
      `osslsigncode verify reports ${tool.signatures.length} signature(s) in ${input}, codesign reads ${own.length}`,
      { hint: "the file's signatures are not what they seem: it is not judged valid" },
    );
  }
  const signatures = own.map((j): FormatSignatureReport => {
    const t = tool.signatures.find((s) => s.index === j.index);
    return {
      index: j.index,
      signer: j.signer,
      hash: t?.hash ?? j.hash.toUpperCase(),
      ...(t?.timestamp ? { timestamp: t.timestamp } : {}),
      trusted: true,
      chain: j.chain,
      checkedAt: j.checkedAt,
      timestamps: j.timestamps,
    };
  });
  return {
    tool: tool.tool,
    signatures,
    signers: [...new Set(own.map((j) => j.signer))],
    timestamps: own.flatMap((j) => j.timestamps.map((t) => t.genTime)),
    warnings: [...new Set(own.flatMap((j) => j.warnings))],
    certificates: own.map((j) => j.certificate),
  };
}

/** Each signer's .SF and block, read from the JAR with yauzl (bounded). */
async function readSigners(
  input: string,
): Promise<Array<{ signer: string; block: string; sf: Uint8Array; blockBytes: Uint8Array }>> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.openPromise(input, { lazyEntries: true, autoClose: false, validateEntrySizes: true });
  } catch (e) {
    throw damaged(`the JAR ${input}`, e);
  }
  try {
    const entries = new Map<string, yauzl.Entry>();
    for await (const entry of zip.eachEntry()) {
      const name = entry.fileName;
      if (entries.has(name) && /^META-INF\//i.test(name)) {
        throw new CodesignError("VERIFY_FAILED", `${input} holds ${name} twice`);
      }
      entries.set(name, entry);
    }
    const read = async (name: string, max: number): Promise<Uint8Array> => {
      const entry = entries.get(name) as yauzl.Entry;
      if (entry.uncompressedSize > max) {
        throw new CodesignError(
          "VERIFY_FAILED",
          `${input}: ${name} is larger than a ${name.endsWith(".SF") ? "signature file" : "signature block"} can be`,
        );
      }
      const chunks: Buffer[] = [];
      for await (const chunk of await zip.openReadStreamPromise(entry)) chunks.push(chunk as Buffer);
      return new Uint8Array(Buffer.concat(chunks));
    };
    const out = [];
    for (const pair of signatureBlocks([...entries.keys()])) {
      out.push({
        signer: pair.signer,
        block: pair.block,
        sf: await read(pair.sf, SF_MAX_BYTES),
        blockBytes: await read(pair.block, BLOCK_MAX_BYTES),
      });
    }
    return out;
  } catch (e) {
    if (isCodesignError(e)) throw e;
    throw damaged(`the JAR ${input}`, e);
  } finally {
    zip.close();
  }
}

interface JarSignerJudgement {
  report: FormatSignatureReport;
  certificate: Uint8Array | undefined;
  warnings: string[];
}

/**
 * codesign's judgement of every JAR signer: the block is a detached CMS over the .SF, verified
 * by verifyCms — signature, timestamps, path and code-signing policy, as for any CMS.
 */
async function judgeJarFile(input: string, o: FormatVerifyOptions): Promise<JarSignerJudgement[]> {
  const signers = await readSigners(input);
  if (signers.length === 0) {
    throw new CodesignError("VERIFY_FAILED", `${input} is not signed (no META-INF/*.SF with its block)`, {
      hint: "sign it with codesign sign",
    });
  }
  return withPrivateDir(async (dir) => {
    const out: JarSignerJudgement[] = [];
    const refused: string[] = [];
    let hint: string | undefined;
    for (const [index, s] of signers.entries()) {
      const which = `JAR signer ${s.signer} (${s.block})`;
      try {
        let signed: pkijs.SignedData;
        try {
          signed = parseSignedData(s.blockBytes, s.block);
        } catch (e) {
          throw damaged(s.block, e);
        }
        const sfFile = path.join(dir, `${index}.SF`);
        await writeFile(sfFile, s.sf, { mode: 0o600 });
        const r = await verifyCms(signed, sfFile, { ca: o.ca, purpose: o.purpose, revocation: o.revocation });
        const first = r.signers?.[0];
        const si = signed.signerInfos[0];
        const cert = si ? findSignerCertificate(signed, si) : undefined;
        out.push({
          report: {
            index,
            ...(r.signer ? { signer: r.signer } : {}),
            ...(first
              ? { hash: first.hash.toUpperCase(), chain: first.chain, checkedAt: first.checkedAt }
              : {}),
            trusted: true,
            timestamps: r.timestamps,
            block: s.block,
          },
          certificate: cert ? certDer(cert) : undefined,
          warnings: r.warnings,
        });
      } catch (e) {
        if (!isCodesignError(e)) throw e;
        refused.push(`${which}: ${e.message}`);
        hint ??= e.hint;
      }
    }
    if (refused.length > 0) {
      throw new CodesignError("VERIFY_FAILED", `${input} is not validly signed: ${refused.join("; ")}`, {
        hint: hint ?? "every signer must pass",
      });
    }
    return out;
  }, "codesign-verify-");
}

/** A JAR: jarsigner -verify -strict and codesign's own judgement of every signer. */
export async function verifyJarFile(input: string, o: FormatVerifyOptions): Promise<FormatVerdict> {
  const { tool, own } = await both(
    verifyJar(input, { caFiles: [...o.ca], toolPath: o.toolPath }),
    judgeJarFile(input, o),
    "jarsigner -verify -strict",
  );
  return {
    tool: tool.tool,
    signatures: own.map((j) => j.report),
    signers: tool.signers,
    timestamps: tool.timestamps,
    warnings: [...new Set([...tool.warnings, ...own.flatMap((j) => j.warnings)])],
    certificates: own.flatMap((j) => (j.certificate ? [j.certificate] : [])),
  };
}
