/** `codesign sign --tool cms`: detached (default) or attached CMS, optionally timestamped. */
import { runBatch, type BatchItem, type BatchResult } from "../../app/batch.js";
import { readCertificates, resolveSignerCertificate } from "../../core/pki/certificate.js";
import { ATTACHED_MAX_BYTES, cmsOutput, parseSignedData, signCms } from "../../core/pki/cms.js";
import { CodesignError } from "../../core/errors.js";
import { assertDistinct, writeFileAtomic } from "../../core/util/files.js";
import { hashFile } from "../../core/util/hash.js";
import { defaultScheme, type HashName, type SignatureScheme, type Signer } from "../../core/signer.js";
import { encodeSignedData, timestampSignedData } from "../../core/pki/timestamp.js";
import { withTokenKey, type OpenKey } from "../../core/pkcs11/token-key.js";
import { inputSize } from "../../core/util/files.js";
import { flag, keyAccess, list, str, timestampOptions } from "../common.js";
import { info, printJson } from "../output.js";
import { progressBar } from "../progress.js";
import { jobsOf } from "./sign.js";

interface CmsArgs {
  hash: HashName;
  mechanism: SignatureScheme | undefined;
  attached: boolean;
  format: "der" | "pem";
  signedAttributes: boolean;
  chainFiles: string[];
  certFile: string | undefined;
  timestamps: ReturnType<typeof timestampOptions>;
}

function cmsArgs(args: Record<string, unknown>): CmsArgs {
  return {
    hash: (str(args, "hash") ?? "sha256") as HashName,
    mechanism: str(args, "mechanism") as SignatureScheme | undefined,
    attached: flag(args, "attached"),
    format: str(args, "format") === "pem" ? "pem" : "der",
    signedAttributes: args["signed-attributes"] !== false,
    chainFiles: list(args, "chain"),
    certFile: str(args, "cert"),
    timestamps: timestampOptions(args),
  };
}

/**
 * Fails on an unreadable input — or one too large to attach — before a PIN is asked for or the
 * token touched.
 */
async function checkInput(input: string, attached: boolean): Promise<void> {
  const size = await inputSize(input);
  if (attached && size > ATTACHED_MAX_BYTES) {
    throw new CodesignError(
      "INVALID_INPUT",
      `${input} is over 256 MiB: too large to embed in the signature`,
      {
        hint: "sign it detached (drop --attached); the signature then travels beside the file",
      },
    );
  }
}

type Prepared = {
  signer: Signer;
  cert: Uint8Array;
  chain: Uint8Array[];
  scheme: SignatureScheme;
  o: CmsArgs;
};

async function prepare(k: OpenKey, o: CmsArgs): Promise<Prepared> {
  const cert = await resolveSignerCertificate(k.key, o.certFile);
  const chain = (await Promise.all(o.chainFiles.map((f) => readCertificates(f)))).flat();
  return { signer: k.signer, cert: cert.der, chain, scheme: o.mechanism ?? defaultScheme(k.key.keyType), o };
}

/** One file: sign, timestamp when asked, write atomically. Nothing is written when any step fails. */
async function signOne(p: Prepared, item: BatchItem, early?: Promise<Uint8Array>) {
  const der = await signCms(p.signer, item.input, {
    hash: p.o.hash,
    scheme: p.scheme,
    certificate: p.cert,
    chain: p.chain,
    attached: p.o.attached,
    signedAttributes: p.o.signedAttributes,
    ...(early ? { early: { hash: p.o.hash, digest: early } } : {}),
  });
  let final = der;
  let timestamp: { url: string; genTime: string } | undefined;
  if (p.o.timestamps.urls.length > 0) {
    const signed = parseSignedData(der, "the new signature");
    const [ts] = await timestampSignedData(signed, p.o.timestamps.urls, p.o.timestamps.failover);
    final = encodeSignedData(signed);
    if (ts) timestamp = { url: ts.url, genTime: ts.genTime.toISOString() };
  }
  await writeFileAtomic(item.output, cmsOutput(final, p.o.format));
  return {
    scheme: p.scheme,
    attached: p.o.attached,
    format: p.o.format,
    ...(timestamp ? { timestamp } : {}),
  };
}

export async function run(args: Record<string, unknown>): Promise<void> {
  const input = str(args, "in") as string;
  const output = str(args, "out") ?? `${input}.p7s`;
  assertDistinct(input, output);
  const o = cmsArgs(args);
  await checkInput(input, o.attached);
  const started = performance.now();
  // Hash a detached file while the module loads and logs in: for a large file that hides the
  // token's start-up. (EdDSA hashes with SHA-512 whatever --hash says; signCms then rehashes.)
  const early = o.attached || o.mechanism === "eddsa" ? undefined : hashFile(input, o.hash);
  early?.catch(() => undefined); // reported when awaited; never an unhandled rejection
  const report = await withTokenKey(keyAccess(args), async (k) => ({
    input,
    output,
    key: k.key.uri,
    ...(await signOne(await prepare(k, o), { input, output }, early)),
    ms: Math.round(performance.now() - started),
  }));
  if (flag(args, "json")) printJson(report);
  else
    info(
      `signed ${input} with ${report.key} (CMS ${report.attached ? "attached" : "detached"}, ${report.scheme}${
        report.timestamp ? `, timestamped by ${report.timestamp.url}` : ""
      }) -> ${output}`,
    );
}

/** Many files, one login: `--jobs` sessions share it. */
export async function signBatch(
  args: Record<string, unknown>,
  items: BatchItem[],
): Promise<BatchResult<unknown>[]> {
  const o = cmsArgs(args);
  for (const item of items) await checkInput(item.input, o.attached);
  const jobs = jobsOf(args);
  return withTokenKey({ ...keyAccess(args), sessions: jobs }, async (k) => {
    const p = await prepare(k, o);
    return runBatch<unknown>(items, (item) => signOne(p, item), {
      // More files in flight than sessions: hashing the next files overlaps signing.
      jobs: jobs * 2,
      failFast: flag(args, "fail-fast"),
      onResult: progressBar(items.length, args),
    });
  });
}
