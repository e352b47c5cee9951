/**
 * The text of JAR signing (the JAR File Specification, "Signed JAR File"): the manifest with a
 * digest per entry, the signature file (.SF) with digests of the manifest and its sections, and
 * the signer name. Pure bytes and strings: the zip I/O is in src/app/formats/jar.ts, the
 * signature block (a detached CMS SignedData over the .SF) in src/core/pki/cms.ts.
 *
 * Rules followed here, as Java's own Manifest and ManifestDigester read them:
 * - lines end with CRLF and hold at most 72 bytes; longer ones go on in continuation lines that
 *   start with one space (a UTF-8 character is never cut in two);
 * - a section ends with a blank line, and its digest covers its bytes including that blank line;
 * - sections with the same name are one entry whose digest covers all of them, in order.
 */
import { createHash } from "node:crypto";
import * as pkijs from "pkijs";
import { CodesignError } from "../errors.js";
import type { HashName } from "../signer.js";

const CRLF = "\r\n";
const MAX_LINE = 72;
const OID_COMMON_NAME = "2.5.4.3";

/** `SHA-256` etc.: the name the JAR specification gives a digest algorithm. */
export const jarDigestName = (hash: HashName): string => hash.replace("sha", "SHA-");

/** The manifest attribute holding an entry's digest, e.g. `SHA-256-Digest`. */
export const digestAttribute = (hash: HashName): string => `${jarDigestName(hash)}-Digest`;

/** The digest algorithm of a `<Hash>-Digest` attribute name, when it is one codesign computes. */
export function hashOfDigestAttribute(name: string): HashName | undefined {
  const m = /^SHA-(256|384|512)-Digest$/i.exec(name);
  return m ? (`sha${m[1]}` as HashName) : undefined;
}

const base64Digest = (hash: HashName, ...parts: Uint8Array[]): string => {
  const h = createHash(hash);
  for (const p of parts) h.update(p);
  return h.digest("base64");
};

/**
 * One header line `Name: value`, wrapped into lines of at most 72 bytes (CRLF not counted):
 * continuation lines begin with a space, and a multi-byte UTF-8 character stays whole.
 */
export function manifestLine(name: string, value: string): string {
  const text = `${name}: ${value}`;
  if (/[\r\n\0]/.test(text)) {
    throw new CodesignError(
      "INVALID_INPUT",
      `a manifest line cannot hold CR, LF or NUL: ${JSON.stringify(name)}`,
      {
        hint: "rename the entry: the JAR manifest cannot name it",
      },
    );
  }
  const lines: string[] = [];
  let line = "";
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > MAX_LINE) {
      lines.push(line);
      line = " ";
      bytes = 1;
    }
    line += ch;
    bytes += n;
  }
  lines.push(line);
  return lines.map((l) => l + CRLF).join("");
}

/** A section's text: its header lines, then the blank line that ends it. */
export function sectionText(attributes: ReadonlyArray<readonly [string, string]>): string {
  return attributes.map(([k, v]) => manifestLine(k, v)).join("") + CRLF;
}

export interface ManifestSection {
  /** The section's bytes as they are in the file, including the blank line that ends it. */
  raw: Uint8Array;
  /** Header lines, continuation lines joined, in order (names as written). */
  attributes: Array<[string, string]>;
  /** The `Name:` of an individual section; undefined for the main section. */
  name: string | undefined;
}

export interface ParsedManifest {
  main: ManifestSection;
  sections: ManifestSection[];
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The lines of `bytes` as [start, end of text, end with terminator]; CRLF, LF or CR end a line. */
function lines(bytes: Uint8Array): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b !== 0x0d && b !== 0x0a) continue;
    const next = b === 0x0d && bytes[i + 1] === 0x0a ? i + 2 : i + 1;
    out.push([start, i, next]);
    start = next;
    i = next - 1;
  }
  if (start < bytes.length) out.push([start, bytes.length, bytes.length]);
  return out;
}

/**
 * Reads a manifest keeping every section's exact bytes, as the digests of an existing signer
 * cover them. Blank lines between sections are not kept (no digest covers them). A last section
 * without its blank line is given one (CRLF), so sections can follow it.
 */
export function parseManifest(bytes: Uint8Array, what = "META-INF/MANIFEST.MF"): ParsedManifest {
  const bad = (why: string, cause?: unknown) =>
    new CodesignError("INVALID_INPUT", `${what} is not a valid manifest: ${why}`, {
      hint: "repair the JAR's manifest (or remove it: codesign writes a new one)",
      ...(cause === undefined ? {} : { cause }),
    });
  const sections: ManifestSection[] = [];
  let sectionStart = -1;
  let headers: Uint8Array[] = [];
  const close = (end: number, terminated: boolean) => {
    if (sectionStart < 0) return;
    const attributes = headers.map((h): [string, string] => {
      let text: string;
      try {
        text = utf8.decode(h);
      } catch (cause) {
        throw bad("a line is not UTF-8", cause);
      }
      const m = /^([A-Za-z0-9_-]+): (.*)$/s.exec(text);
      if (!m) throw bad(`a line is not "Name: value": ${JSON.stringify(text.slice(0, 80))}`);
      return [m[1] as string, m[2] as string];
    });
    const raw = bytes.subarray(sectionStart, end);
    const whole = terminated
      ? raw
      : Buffer.concat([raw, Buffer.from(endsWithNewline(raw) ? CRLF : CRLF + CRLF)]);
    const first = attributes[0];
    const name = sections.length > 0 && first && first[0].toLowerCase() === "name" ? first[1] : undefined;
    if (sections.length > 0 && name === undefined) throw bad("a section after the first has no Name:");
    sections.push({ raw: new Uint8Array(whole), attributes, name });
    sectionStart = -1;
    headers = [];
  };
  for (const [start, textEnd, end] of lines(bytes)) {
    if (textEnd === start) {
      if (sectionStart >= 0) close(end, true);
      continue;
    }
    if (sectionStart < 0) sectionStart = start;
    const text = bytes.subarray(start, textEnd);
    if (text[0] === 0x20) {
      const last = headers.pop();
      if (!last) throw bad("a continuation line starts a section");
      headers.push(Buffer.concat([last, text.subarray(1)]));
    } else {
      headers.push(text);
    }
  }
  close(bytes.length, false);
  const [main, ...rest] = sections;
  return { main: main ?? { raw: new Uint8Array(), attributes: [], name: undefined }, sections: rest };
}

const endsWithNewline = (b: Uint8Array) =>
  b.length > 0 && (b[b.length - 1] === 0x0a || b[b.length - 1] === 0x0d);

/** An entry of the JAR whose content the manifest must cover, with its digests (base64). */
export interface EntryDigests {
  name: string;
  digests: Partial<Record<HashName, string>>;
}

export interface BuiltManifest {
  bytes: Uint8Array;
  main: Uint8Array;
  /** Named sections in manifest order (a name may repeat). */
  sections: Array<{ name: string; raw: Uint8Array }>;
}

/**
 * The digest algorithms an entry must be hashed with: the new signer's, and those the existing
 * manifest already uses (they are kept, so they are checked against the entries).
 */
export function hashesToCompute(existing: ParsedManifest | undefined, hash: HashName): HashName[] {
  const wanted = new Set<HashName>([hash]);
  for (const s of existing?.sections ?? []) {
    for (const [k] of s.attributes) {
      const h = hashOfDigestAttribute(k);
      if (h) wanted.add(h);
    }
  }
  return [...wanted];
}

/**
 * The manifest for signing `entries` with `hash`:
 * - the existing main section and every existing section are kept byte for byte when they already
 *   carry a digest — an earlier signer's .SF covers exactly those bytes, so adding a line to them
 *   would leave that signer covering nothing. Their digests are checked against the entries
 *   instead (a mismatch means the JAR changed after its manifest was written);
 * - an existing section without any digest (e.g. `Sealed: true`) gains the new hash's digest;
 * - entries with no section get one, `Name` then `<Hash>-Digest`.
 */
export function buildManifest(
  existing: ParsedManifest | undefined,
  entries: readonly EntryDigests[],
  hash: HashName,
  createdBy: string,
): BuiltManifest {
  const byName = new Map(entries.map((e) => [e.name, e]));
  const main = existing?.main.attributes.length
    ? existing.main.raw
    : Buffer.from(
        sectionText([
          ["Manifest-Version", "1.0"],
          ["Created-By", createdBy],
        ]),
      );
  const sections: BuiltManifest["sections"] = [];
  const covered = new Set<string>();
  for (const s of existing?.sections ?? []) {
    const name = s.name as string;
    const entry = byName.get(name);
    const digests = s.attributes.filter(([k]) => /-Digest$/i.test(k));
    if (entry && digests.length === 0) {
      const body = stripBlankLine(s.raw);
      const line = manifestLine(digestAttribute(hash), entry.digests[hash] ?? missing(name, hash));
      sections.push({ name, raw: new Uint8Array(Buffer.concat([body, Buffer.from(line + CRLF)])) });
    } else {
      for (const [k, v] of digests) {
        const h = hashOfDigestAttribute(k);
        const actual = h ? entry?.digests[h] : undefined;
        if (actual !== undefined && actual !== v) {
          throw new CodesignError(
            "INVALID_INPUT",
            `${name} has changed since the JAR's manifest was written (its ${k} differs)`,
            { hint: "rebuild the JAR, or remove its META-INF/MANIFEST.MF digests and signatures first" },
          );
        }
      }
      sections.push({ name, raw: s.raw });
    }
    if (entry) covered.add(name);
  }
  for (const e of entries) {
    if (covered.has(e.name)) continue;
    const text = sectionText([
      ["Name", e.name],
      [digestAttribute(hash), e.digests[hash] ?? missing(e.name, hash)],
    ]);
    sections.push({ name: e.name, raw: new Uint8Array(Buffer.from(text)) });
    covered.add(e.name);
  }
  const bytes = new Uint8Array(Buffer.concat([main, ...sections.map((s) => s.raw)]));
  return { bytes, main: new Uint8Array(main), sections };
}

const missing = (name: string, hash: HashName): never => {
  throw new CodesignError("INTERNAL", `no ${hash} digest was computed for ${name}`);
};

/** A section's bytes without the blank line that ends it (its last line terminator). */
function stripBlankLine(raw: Uint8Array): Buffer {
  const b = Buffer.from(raw);
  return b.subarray(0, b.length >= 2 && b[b.length - 2] === 0x0d && b[b.length - 1] === 0x0a ? -2 : -1);
}

/**
 * The signature file (.SF): digests of the whole manifest, of its main section, and of each
 * named section (sections sharing a name digested together, as Java reads them).
 */
export function signatureFile(manifest: BuiltManifest, hash: HashName, createdBy: string): Uint8Array {
  const d = jarDigestName(hash);
  const grouped = new Map<string, Uint8Array[]>();
  for (const s of manifest.sections) grouped.set(s.name, [...(grouped.get(s.name) ?? []), s.raw]);
  const text = [
    sectionText([
      ["Signature-Version", "1.0"],
      ["Created-By", createdBy],
      [`${d}-Digest-Manifest`, base64Digest(hash, manifest.bytes)],
      [`${d}-Digest-Manifest-Main-Attributes`, base64Digest(hash, manifest.main)],
    ]),
    ...[...grouped].map(([name, raws]) =>
      sectionText([
        ["Name", name],
        [digestAttribute(hash), base64Digest(hash, ...raws)],
      ]),
    ),
  ].join("");
  return new Uint8Array(Buffer.from(text, "utf8"));
}

/**
 * Whether a JAR entry belongs to signing itself (never digested in the manifest): the manifest,
 * and in META-INF/ itself any `.SF`, `.RSA`, `.DSA`, `.EC` or `SIG-*` file — Java's rule.
 */
export function isSignatureRelated(name: string): boolean {
  const upper = name.toUpperCase();
  if (!upper.startsWith("META-INF/")) return false;
  const rest = upper.slice("META-INF/".length);
  if (rest.includes("/") || rest === "") return false;
  return rest === "MANIFEST.MF" || /\.(SF|RSA|DSA|EC)$/.test(rest) || rest.startsWith("SIG-");
}

/** The names of the signers already in a JAR: `META-INF/<NAME>.SF`. */
export function existingSigners(names: readonly string[]): string[] {
  return names.flatMap((n) => {
    const m = /^META-INF\/([^/]+)\.SF$/i.exec(n);
    return m ? [(m[1] as string).toUpperCase()] : [];
  });
}

/**
 * The signer name (`META-INF/<NAME>.SF` and its block): the signer certificate's CN upper-cased,
 * every character outside A-Z 0-9 _ - made `_`, cut to 8 characters; `SIGNER` when the
 * certificate has no CN. A name another signer of the JAR already has gets a number in its last
 * places (`CODESIGN` → `CODESIG2`), so an added signer never replaces one.
 */
export function signerName(commonName: string | undefined, taken: readonly string[] = []): string {
  const cleaned = (commonName ?? "")
    .toUpperCase()
    .replace(/[^A-Z0-9_-]/g, "_")
    .slice(0, 8);
  const base = /[A-Z0-9]/.test(cleaned) ? cleaned : "SIGNER";
  const used = new Set(taken.map((t) => t.toUpperCase()));
  if (!used.has(base)) return base;
  for (let n = 2; ; n++) {
    const suffix = String(n);
    const candidate = base.slice(0, 8 - suffix.length) + suffix;
    if (!used.has(candidate)) return candidate;
  }
}

/** The first CN of a DER certificate's subject, if it has one. */
export function certificateCommonName(der: Uint8Array): string | undefined {
  const cert = pkijs.Certificate.fromBER(Uint8Array.from(der).buffer);
  const cn = cert.subject.typesAndValues.find((tv) => tv.type === OID_COMMON_NAME);
  const value: unknown = cn?.value.valueBlock.value;
  return typeof value === "string" ? value : undefined;
}

/** The signature block's file extension for a key type: `.RSA` or `.EC`. */
export function blockExtension(keyType: string): "RSA" | "EC" {
  if (keyType === "rsa") return "RSA";
  if (keyType === "ec") return "EC";
  throw new CodesignError("USAGE", `JAR signing takes RSA or EC keys, not ${keyType}`, {
    hint: "sign JARs with an RSA or EC key",
  });
}

export interface SignatureBlockPair {
  /** The signer's name (the `.SF` file's base name). */
  signer: string;
  /** `META-INF/<NAME>.SF`, as named in the JAR. */
  sf: string;
  /** `META-INF/<NAME>.RSA`, `.DSA` or `.EC`: a detached CMS SignedData over the `.SF`. */
  block: string;
}

/**
 * Each signer of a JAR: its signature file and the block that signs it, paired by base name
 * (case-insensitively, as Java reads them). A signature file without a block, or a block without
 * its signature file, is a VERIFY_FAILED error: such a signer cannot be judged.
 */
export function signatureBlocks(names: readonly string[]): SignatureBlockPair[] {
  const sfs = new Map<string, string>();
  const blocks = new Map<string, string>();
  for (const n of names) {
    const m = /^META-INF\/([^/]+)\.(SF|RSA|DSA|EC)$/i.exec(n);
    if (!m) continue;
    const base = (m[1] as string).toUpperCase();
    const target = (m[2] as string).toUpperCase() === "SF" ? sfs : blocks;
    if (target.has(base)) {
      throw new CodesignError(
        "VERIFY_FAILED",
        `the JAR holds two signature ${target === sfs ? "files" : "blocks"} for signer ${base}`,
      );
    }
    target.set(base, n);
  }
  const out: SignatureBlockPair[] = [];
  for (const [base, sf] of sfs) {
    const block = blocks.get(base);
    if (!block) {
      throw new CodesignError("VERIFY_FAILED", `${sf} has no signature block (.RSA, .DSA or .EC) beside it`, {
        hint: "the signer's signature is missing: sign the JAR again",
      });
    }
    out.push({ signer: base, sf, block });
  }
  for (const [base, block] of blocks) {
    if (!sfs.has(base)) {
      throw new CodesignError("VERIFY_FAILED", `${block} has no signature file (${base}.SF) beside it`, {
        hint: "the signer's signature file is missing: sign the JAR again",
      });
    }
  }
  return out;
}
