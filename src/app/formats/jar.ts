/**
 * JAR signing in-process (the v1 "signed JAR" scheme jarsigner writes and verifies): the entries
 * are hashed into META-INF/MANIFEST.MF, the signature file META-INF/<NAME>.SF digests the
 * manifest, and the block META-INF/<NAME>.RSA or .EC is a detached CMS SignedData over the .SF
 * bytes, signed by the pipeline's one token signer. No JDK and no second login are involved.
 *
 * The zip is read with yauzl and written with yazl: both stream entry by entry, so a large WAR
 * is never held in memory, and the input is read twice — hashed in `prepare`, copied in
 * `finish` — with every copied entry hashed again, so a file that changed in between fails
 * instead of being signed with stale digests.
 */
import { createHash, type Hash } from "node:crypto";
import { createWriteStream } from "node:fs";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as yauzl from "yauzl";
import * as yazl from "yazl";
import { verifyJar } from "../../../adapters/jarsigner.js";
import { CodesignError } from "../../core/errors.js";
import {
  OID,
  assembleSignedData,
  encodeSignedData,
  prepareSignerInfo,
  signingTimeAttribute,
} from "../../core/pki/cms.js";
import {
  blockExtension,
  buildManifest,
  certificateCommonName,
  existingSigners,
  hashesToCompute,
  isSignatureRelated,
  parseManifest,
  signatureFile,
  signerName,
  type EntryDigests,
  type ParsedManifest,
} from "../../core/pki/jar.js";
import type { HashName } from "../../core/signer.js";
import { inputSize, withAtomicOutput } from "../../core/util/files.js";
import type { TokenFormat } from "./contract.js";
import { verifyBeforeReplacing } from "./in-place.js";
import { timestamp } from "./timestamp.js";

const MANIFEST = "META-INF/MANIFEST.MF";
const CREATED_BY = "codesign";
/** A manifest is text about the entries; past this it is not one. */
const MANIFEST_MAX_BYTES = 64 * 1024 * 1024;

interface JarEntry {
  name: string;
  entry: yauzl.Entry;
  directory: boolean;
}

const notAJar = (input: string, cause: unknown): CodesignError =>
  new CodesignError(
    "INVALID_INPUT",
    `${input} is not a readable JAR (zip): ${cause instanceof Error ? cause.message : String(cause)}`,
    { hint: "give a .jar/.war/.ear made by jar, Maven or Gradle", cause },
  );

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Opens the JAR and lists its entries. Names are read as UTF-8 bytes, as Java's JarFile reads them. */
async function openJar(input: string): Promise<{ zip: yauzl.ZipFile; entries: JarEntry[] }> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.openPromise(input, { lazyEntries: true, autoClose: false, validateEntrySizes: true });
  } catch (cause) {
    throw notAJar(input, cause);
  }
  try {
    const entries: JarEntry[] = [];
    const seen = new Set<string>();
    for await (const entry of zip.eachEntry()) {
      let name: string;
      try {
        name = utf8.decode(entry.fileNameRaw);
      } catch (cause) {
        throw notAJar(input, new Error("an entry name is not UTF-8", { cause }));
      }
      if (entry.isEncrypted()) throw notAJar(input, new Error(`${name} is encrypted`));
      if (seen.has(name)) throw notAJar(input, new Error(`${name} is in it twice`));
      seen.add(name);
      entries.push({ name, entry, directory: name.endsWith("/") });
    }
    return { zip, entries };
  } catch (e) {
    zip.close();
    throw e instanceof CodesignError ? e : notAJar(input, e);
  }
}

async function readEntry(
  zip: yauzl.ZipFile,
  entry: yauzl.Entry,
  max: number,
  what: string,
): Promise<Uint8Array> {
  if (entry.uncompressedSize > max) {
    throw new CodesignError("INVALID_INPUT", `${what} is larger than ${max} bytes`, {
      hint: "check that this is the right file",
    });
  }
  const chunks: Buffer[] = [];
  for await (const chunk of await zip.openReadStreamPromise(entry)) chunks.push(chunk as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

async function digestEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, hashes: HashName[]) {
  const hs = hashes.map((h) => [h, createHash(h)] as const);
  for await (const chunk of await zip.openReadStreamPromise(entry)) {
    for (const [, h] of hs) h.update(chunk as Buffer);
  }
  return Object.fromEntries(hs.map(([name, h]) => [name, h.digest("base64")])) as EntryDigests["digests"];
}

const isManifest = (name: string) => name.toUpperCase() === MANIFEST;
/** Entries the manifest covers: files, not directories, not the manifest or signature files. */
const isContent = (e: JarEntry) => !e.directory && !isSignatureRelated(e.name);

const changed = (name: string): CodesignError =>
  new CodesignError("INVALID_INPUT", `${name} changed in the JAR while it was being signed`, {
    hint: "sign the JAR again once nothing is writing to it",
  });

/** Hashes an entry again as it is copied: the bytes written must be the bytes signed. */
function recheck(name: string, hash: HashName, expected: string): Transform {
  const h: Hash = createHash(hash);
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      h.update(chunk);
      done(null, chunk);
    },
    flush(done) {
      done(h.digest("base64") === expected ? null : changed(name));
    },
  });
}

interface Plan {
  manifest: Uint8Array;
  sf: Uint8Array;
  sfName: string;
  blockName: string;
  digests: Map<string, EntryDigests["digests"]>;
}

/** Stored entries are held in memory while written (see writeSignedJar); past this, refused. */
const STORED_MAX_BYTES = 1024 * 1024 * 1024;

/**
 * Writes the signed JAR: manifest, .SF, block, the other signers' files, then the entries in
 * their order. Deflated entries are streamed (yazl then writes a data descriptor, which Java's
 * ZipInputStream accepts for deflated entries only); stored entries — nested JARs in Spring Boot
 * archives, which must stay stored — are read whole and added as buffers, so their local headers
 * carry the sizes and CRC and `JarInputStream` can read them.
 */
async function writeSignedJar(input: string, output: string, plan: Plan, block: Uint8Array, hash: HashName) {
  const { zip, entries } = await openJar(input);
  const out = new yazl.ZipFile();
  try {
    const failed = new Promise<never>((_, reject) => out.on("error", reject));
    failed.catch(() => undefined);
    const written = pipeline(out.outputStream, createWriteStream(output, { mode: 0o644 }));
    written.catch(() => undefined);
    const now = new Date();
    out.addBuffer(Buffer.from(plan.manifest), MANIFEST, { mtime: now });
    out.addBuffer(Buffer.from(plan.sf), plan.sfName, { mtime: now });
    out.addBuffer(Buffer.from(block), plan.blockName, { mtime: now });
    const signing = entries.filter((e) => isSignatureRelated(e.name) && !isManifest(e.name));
    const rest = entries.filter((e) => !isSignatureRelated(e.name));
    for (const e of [...signing, ...rest]) {
      const mtime = e.entry.getLastModDate();
      if (e.directory) {
        out.addEmptyDirectory(e.name, { mtime });
        continue;
      }
      const mode = e.entry.externalFileAttributes >>> 16;
      const options = { mtime, ...((mode & 0o170000) === 0o100000 ? { mode } : {}) };
      const expected = isContent(e) ? plan.digests.get(e.name)?.[hash] : undefined;
      if (e.entry.compressionMethod === 0) {
        const data = await readEntry(zip, e.entry, STORED_MAX_BYTES, `${input}: the stored entry ${e.name}`);
        if (expected !== undefined && createHash(hash).update(data).digest("base64") !== expected) {
          throw changed(e.name);
        }
        out.addBuffer(Buffer.from(data), e.name, { ...options, compress: false });
        continue;
      }
      out.addReadStreamLazy(e.name, { ...options, compress: true, size: e.entry.uncompressedSize }, (cb) => {
        zip.openReadStream(e.entry, (err, stream: Readable) => {
          if (err) return cb(err, stream);
          if (expected === undefined) return cb(null, stream);
          const checked = stream.pipe(recheck(e.name, hash, expected));
          stream.on("error", (x) => checked.destroy(x));
          cb(null, checked);
        });
      });
    }
    out.end();
    await Promise.race([written, failed]);
  } catch (e) {
    // Ends the pipeline, so the temp file is closed before it is removed.
    if (out.outputStream instanceof Readable) out.outputStream.destroy(e instanceof Error ? e : undefined);
    throw e;
  } finally {
    zip.close();
  }
}

export const jar = {
  name: "jar",
  output: { kind: "embedded" },
  needsCertificate: true,
  overlap: 2,
  fileDigest: () => undefined,
  async check(input) {
    await inputSize(input);
    (await openJar(input)).zip.close(); // not a zip: refused before any login
  },
  async prepare(item, ctx) {
    const o = ctx.options;
    const { hash, scheme } = ctx;
    const certificate = ctx.certificate as Uint8Array;
    const ext = blockExtension(ctx.key.keyType);
    const { zip, entries } = await openJar(item.input);
    let plan: Plan;
    try {
      const manifestEntry = entries.find((e) => isManifest(e.name));
      const existing: ParsedManifest | undefined = manifestEntry
        ? parseManifest(
            await readEntry(zip, manifestEntry.entry, MANIFEST_MAX_BYTES, `${item.input}: ${MANIFEST}`),
          )
        : undefined;
      const hashes = hashesToCompute(existing, hash);
      const digests = new Map<string, EntryDigests["digests"]>();
      for (const e of entries.filter(isContent)) digests.set(e.name, await digestEntry(zip, e.entry, hashes));
      const manifest = buildManifest(
        existing,
        [...digests].map(([name, d]) => ({ name, digests: d })),
        hash,
        CREATED_BY,
      );
      const name = signerName(
        certificateCommonName(certificate),
        existingSigners(entries.map((e) => e.name)),
      );
      plan = {
        manifest: manifest.bytes,
        sf: signatureFile(manifest, hash, CREATED_BY),
        sfName: `META-INF/${name}.SF`,
        blockName: `META-INF/${name}.${ext}`,
        digests,
      };
    } finally {
      zip.close();
    }
    const { signerInfo, toSign } = prepareSignerInfo({
      hash,
      scheme,
      key: ctx.key,
      certificate,
      contentType: OID.data,
      digest: new Uint8Array(createHash(hash).update(plan.sf).digest()),
      signedAttributes: [signingTimeAttribute()],
    });
    return {
      request: { hash, scheme, input: toSign },
      async finish(signature) {
        const signed = assembleSignedData({
          signerInfo,
          signature,
          hash,
          certificate,
          chain: ctx.chain,
          eContentType: OID.data,
        });
        const stamp = await timestamp(signed, ctx, OID.timeStampToken);
        const block = encodeSignedData(signed);
        await withAtomicOutput(
          item.output,
          async (temp) => {
            await writeSignedJar(item.input, temp, plan, block, hash);
            if (path.resolve(item.output) === path.resolve(item.input)) {
              await verifyBeforeReplacing(item.input, () =>
                verifyJar(temp, { caFiles: ctx.certificateFiles, toolPath: o.toolPath }),
              );
            }
          },
          { syncLater: ctx.outputs },
        );
        return { scheme, hash, format: "jar", ...stamp };
      },
    };
  },
} satisfies TokenFormat;
