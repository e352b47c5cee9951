/**
 * `verifyTree(options)`: the release-tree gate. Every file under a directory is classified —
 * Authenticode and JAR by name (file-kind.ts), files with a `.p7s`/`.sig` beside them, those
 * signature files themselves, everything else — and every signed one is verified with `verify()`,
 * the same policy as `codesign verify`. The gate fails when a file of a signable type is unsigned,
 * any signature is invalid, or (with expected signers) a signer certificate's SHA-256 fingerprint
 * is not among them. Other files without a signature are listed and do not fail it.
 *
 * Symbolic links are never followed: a link is listed, and one that points outside the tree
 * fails the gate (what a user unpacks would not be what was checked).
 */
import { lstat, readdir, realpath } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { CodesignError, isCodesignError, type ErrorCode } from "../core/errors.js";
import { loadAnchors } from "../core/pki/path.js";
import type { VerifyPurpose } from "../core/pki/policy.js";
import { newRevocationCache } from "../core/pki/revocation.js";
import { fileKind } from "./file-kind.js";
import { normaliseFingerprint, verify, type VerifyResult } from "./verify.js";

export interface TreeOptions {
  /** The release tree. */
  dir: string;
  /** Trust anchors (as verify's `ca`); default the system store. */
  ca?: readonly string[] | undefined;
  crl?: readonly string[] | undefined;
  /** As verify's `online`; answers are fetched once per URL for the whole tree. */
  online?: boolean | undefined;
  purpose?: VerifyPurpose | undefined;
  /** SHA-256 fingerprints of the signer certificates allowed (any case, colons optional). */
  expectSigner?: readonly string[] | undefined;
  /** Globs (picomatch; relative to the tree, `/`-separated) of files that are not yours. */
  ignore?: readonly string[] | undefined;
  toolPath?: string | undefined;
  /** Files verified at once (default min(4, cores)). */
  jobs?: number | undefined;
}

/** authenticode, jar: by name; detached: a file with a .p7s/.sig beside it; signature: such a file. */
export type TreeKind = "authenticode" | "jar" | "apk" | "detached" | "signature" | "symlink" | "other";
export type TreeStatus = "valid" | "invalid" | "unsigned" | "ignored" | "other";

export interface TreeRow {
  /** Relative to the tree, `/`-separated. */
  path: string;
  kind: TreeKind;
  status: TreeStatus;
  /** The signer's subject (several joined by "; "). */
  signer?: string;
  /** The first signer certificate's SHA-256 fingerprint (all of them in `fingerprints`). */
  fingerprint?: string;
  fingerprints?: string[];
  /** The detached signature(s) verified for this file, or the file a signature belongs to. */
  signature?: string;
  /** Why it is invalid, unsigned, ignored or other. */
  reason?: string;
}

export interface TreeSummary {
  files: number;
  valid: number;
  invalid: number;
  unsigned: number;
  ignored: number;
  other: number;
}

export interface TreeReport {
  ok: boolean;
  dir: string;
  files: TreeRow[];
  summary: TreeSummary;
}

type Matcher = (file: string) => boolean;

/**
 * picomatch (already installed; well kept, what vite, tinyglobby and fdir use): `dot: true` so
 * `*` matches dot files too, and `basename: true` so a glob without a slash matches the name in
 * any directory (`*.dll`), as in .gitignore. It ships no types: the one call used is typed here.
 */
function globMatcher(globs: readonly string[]): Matcher {
  if (globs.length === 0) return () => false;
  const require = createRequire(import.meta.url);
  const picomatch = require("picomatch") as (
    glob: string | string[],
    options?: { dot?: boolean; basename?: boolean },
  ) => Matcher;
  return picomatch([...globs], { dot: true, basename: true });
}

interface Entry {
  rel: string;
  abs: string;
  kind: "file" | "symlink" | "special";
}

/** Every entry under `root`, depth first, sorted; directories are descended, links never followed. */
async function walk(root: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const visit = async (dir: string, prefix: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const abs = path.join(dir, e.name);
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) await visit(abs, rel);
      else if (e.isSymbolicLink()) out.push({ rel, abs, kind: "symlink" });
      else out.push({ rel, abs, kind: e.isFile() ? "file" : "special" });
    }
  };
  await visit(root, "");
  return out;
}

const SIGNATURE_SUFFIXES = [".p7s", ".sig"];

/** The errors that make one file invalid; anything else (a missing tool, a bug) stops the gate. */
const FILE_ERRORS: ReadonlySet<ErrorCode> = new Set(["VERIFY_FAILED", "USAGE", "INVALID_INPUT"]);

const unsignedWords = /\b(is not signed|is unsigned|file is not signed|No signature found)\b/i;

function signerOf(r: VerifyResult): string | undefined {
  if ("tool" in r) return r.signers.length > 0 ? r.signers.join("; ") : undefined;
  const names = r.signers?.map((s) => s.signer) ?? (r.signer ? [r.signer] : []);
  return names.length > 0 ? [...new Set(names)].join("; ") : undefined;
}

async function runPool<T>(items: readonly T[], jobs: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, items.length)) }, worker));
}

export async function verifyTree(o: TreeOptions): Promise<TreeReport> {
  const root = path.resolve(o.dir);
  const st = await lstat(root).catch((cause: NodeJS.ErrnoException) => {
    throw new CodesignError("USAGE", `cannot read the tree ${o.dir}: ${cause.code}`, { cause });
  });
  if (!st.isDirectory()) {
    throw new CodesignError("USAGE", `${o.dir} is not a directory`, {
      hint: "give the release tree's directory",
    });
  }
  const expected = new Set<string>();
  for (const f of o.expectSigner ?? []) {
    const n = normaliseFingerprint(f);
    if (!n) {
      throw new CodesignError("USAGE", `--expect-signer ${f} is not a SHA-256 fingerprint`, {
        hint: "give the 64 hex digits `openssl x509 -noout -fingerprint -sha256` prints (colons optional)",
      });
    }
    expected.add(n);
  }
  const ca = [...(o.ca ?? [])];
  if (ca.length > 0) await loadAnchors(ca); // a bad --ca is exit 2 once, not a failure per file
  const ignored = globMatcher(o.ignore ?? []);
  const realRoot = await realpath(root);

  const entries = await walk(root);
  const files = new Set(entries.filter((e) => e.kind === "file").map((e) => e.rel));
  const rows = new Map<string, TreeRow>();
  const work: Array<{ row: TreeRow; abs: string; signatures: string[]; embedded: boolean }> = [];

  for (const e of entries) {
    if (ignored(e.rel)) {
      rows.set(e.rel, {
        path: e.rel,
        kind: e.kind === "symlink" ? "symlink" : kindOf(e.rel, files),
        status: "ignored",
      });
      continue;
    }
    if (e.kind === "symlink") {
      const target = await realpath(e.abs).catch(() => undefined);
      const inside = target !== undefined && (target === realRoot || target.startsWith(realRoot + path.sep));
      rows.set(
        e.rel,
        inside
          ? {
              path: e.rel,
              kind: "symlink",
              status: "other",
              reason: `a link to ${path.relative(realRoot, target)} (checked there)`,
            }
          : {
              path: e.rel,
              kind: "symlink",
              status: "invalid",
              reason: target ? "a symbolic link to outside the tree" : "a dangling symbolic link",
            },
      );
      continue;
    }
    if (e.kind === "special") {
      rows.set(e.rel, { path: e.rel, kind: "other", status: "invalid", reason: "not a regular file" });
      continue;
    }
    const suffix = SIGNATURE_SUFFIXES.find((s) => e.rel.endsWith(s));
    const signedFile = suffix ? e.rel.slice(0, -suffix.length) : undefined;
    if (signedFile !== undefined && files.has(signedFile)) {
      rows.set(e.rel, {
        path: e.rel,
        kind: "signature",
        status: "other",
        signature: signedFile,
        reason: `the signature of ${signedFile}`,
      });
      continue;
    }
    if (suffix === ".sig") {
      // A raw signature whose file is gone: nothing it could prove.
      rows.set(e.rel, {
        path: e.rel,
        kind: "signature",
        status: "invalid",
        reason: `${signedFile ?? ""} is missing`,
      });
      continue;
    }
    const beside = SIGNATURE_SUFFIXES.map((s) => e.rel + s).filter((s) => files.has(s));
    const byName = fileKind(e.rel);
    const kind: TreeKind =
      byName !== "other" ? byName : beside.length > 0 ? "detached" : suffix ? "signature" : "other";
    const row: TreeRow = { path: e.rel, kind, status: "other" };
    rows.set(e.rel, row);
    if (byName !== "other" || beside.length > 0 || suffix === ".p7s") {
      // A .p7s without its file is verified as an attached CMS (a detached one then fails).
      work.push({ row, abs: e.abs, signatures: beside, embedded: byName !== "other" || beside.length === 0 });
    } else {
      row.reason = "unsigned-other: not a signable type and no signature beside it";
    }
  }

  const revocationCache = newRevocationCache();
  const check = async (w: (typeof work)[number]): Promise<void> => {
    const results: VerifyResult[] = [];
    const common = {
      ca,
      crl: o.crl,
      online: o.online,
      revocationCache,
      purpose: o.purpose,
      toolPath: o.toolPath,
    };
    try {
      if (w.embedded) results.push(await verify({ input: w.abs, ...common }));
      for (const s of w.signatures) {
        results.push(await verify({ input: w.abs, signature: path.join(root, s), ...common }));
      }
    } catch (e) {
      if (!isCodesignError(e) || !FILE_ERRORS.has(e.code)) throw e;
      const unsigned =
        w.row.kind !== "detached" &&
        results.length === 0 &&
        w.signatures.length === 0 &&
        unsignedWords.test(`${e.message} ${e.hint ?? ""}`);
      Object.assign(w.row, { status: unsigned ? "unsigned" : "invalid", reason: e.message });
      if (w.signatures.length > 0) w.row.signature = w.signatures.join(", ");
      return;
    }
    const fingerprints = [...new Set(results.flatMap((r) => r.fingerprints))];
    const signer = results.map(signerOf).filter(Boolean).join("; ");
    Object.assign(w.row, {
      status: "valid",
      ...(signer ? { signer } : {}),
      ...(fingerprints[0] ? { fingerprint: fingerprints[0] } : {}),
      ...(fingerprints.length > 1 ? { fingerprints } : {}),
      ...(w.signatures.length > 0 ? { signature: w.signatures.join(", ") } : {}),
    });
    if (expected.size > 0) {
      const stranger = fingerprints.find((f) => !expected.has(f));
      if (fingerprints.length === 0) {
        Object.assign(w.row, {
          status: "invalid",
          reason: "the signer certificate's fingerprint could not be read",
        });
      } else if (stranger) {
        Object.assign(w.row, {
          status: "invalid",
          reason: `signed by ${stranger}, which is not an expected signer`,
        });
      }
    }
  };
  await runPool(work, o.jobs ?? Math.min(4, os.availableParallelism()), check);

  const list = [...rows.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const count = (s: TreeStatus) => list.filter((r) => r.status === s).length;
  const summary: TreeSummary = {
    files: list.length,
    valid: count("valid"),
    invalid: count("invalid"),
    unsigned: count("unsigned"),
    ignored: count("ignored"),
    other: count("other"),
  };
  return { ok: summary.invalid === 0 && summary.unsigned === 0, dir: o.dir, files: list, summary };
}

function kindOf(rel: string, files: ReadonlySet<string>): TreeKind {
  const byName = fileKind(rel);
  if (byName !== "other") return byName;
  const suffix = SIGNATURE_SUFFIXES.find((s) => rel.endsWith(s));
  if (suffix && files.has(rel.slice(0, -suffix.length))) return "signature";
  return SIGNATURE_SUFFIXES.some((s) => files.has(rel + s)) ? "detached" : "other";
}
