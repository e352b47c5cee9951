/**
 * The slice of gpgsm's interface git speaks for `gpg.format = x509` (gpg-interface.c): the
 * arguments it passes, the PEM header it recognises a signature by, and the `[GNUPG:]` status
 * lines it reads. Pure text in, text out.
 *
 * Signing: `PROGRAM --status-fd=2 -bsau KEY`, the payload on stdin, the detached signature on
 * stdout; git requires a line starting `[GNUPG:] SIG_CREATED ` on the status fd.
 * Verifying: `PROGRAM --status-fd=1 --verify SIGFILE -`, the payload on stdin; git requires
 * `\n[GNUPG:] GOODSIG ` in the status output (so GOODSIG is never the first line: NEWSIG comes
 * before it) and exit 0, and takes the key, signer, fingerprint and trust level from GOODSIG,
 * VALIDSIG and TRUST_*. Whatever the program writes to stderr is what git shows the user.
 */
import type { HashName, KeyType } from "../core/signer.js";

/** git finds an x509 signature in a commit or tag by this line, and only by it. */
export const PEM_LABEL = "SIGNED MESSAGE";

/** OpenPGP public-key algorithm ids (RFC 4880 §9.1, RFC 6637, EdDSA 22), as gpgsm reports them. */
const PK_ALGO: Record<KeyType, number> = { rsa: 1, ec: 19, eddsa: 22 };
/** OpenPGP hash algorithm ids (RFC 4880 §9.4). */
const HASH_ALGO: Record<HashName, number> = { sha256: 8, sha384: 9, sha512: 10 };

/** A fingerprint as the status lines carry it: one token, uppercase hex, no colons. */
export const statusFingerprint = (fingerprint: string): string => fingerprint.replace(/:/g, "").toUpperCase();

/** Subjects go last on a status line; a newline in one would end the line early. */
const oneLine = (text: string): string => text.replace(/[\r\n]+/g, " ");

const seconds = (d: Date): number => Math.floor(d.getTime() / 1000);

export function sigCreated(o: { keyType: KeyType; hash: HashName; time: Date; fingerprint: string }): string {
  // SIG_CREATED <type> <pk_algo> <hash_algo> <class> <timestamp> <key fpr>; D: detached.
  return `[GNUPG:] SIG_CREATED D ${PK_ALGO[o.keyType]} ${HASH_ALGO[o.hash]} 00 ${seconds(o.time)} ${statusFingerprint(o.fingerprint)}\n`;
}

export interface GoodSignature {
  fingerprint: string;
  signer: string;
  signingTime?: Date | undefined;
  keyType?: KeyType | undefined;
  hash?: HashName | undefined;
  /** Chained to a trust anchor under the code-signing policy. */
  trusted: boolean;
}

export function goodSignatureStatus(g: GoodSignature): string {
  const fpr = statusFingerprint(g.fingerprint);
  const time = g.signingTime ?? new Date(0);
  const date = time.toISOString().slice(0, 10);
  const pk = g.keyType ? PK_ALGO[g.keyType] : 0;
  const hash = g.hash ? HASH_ALGO[g.hash] : 0;
  return [
    "[GNUPG:] NEWSIG",
    `[GNUPG:] GOODSIG ${fpr} ${oneLine(g.signer)}`,
    // VALIDSIG <fpr> <date> <timestamp> <expire> <version> <reserved> <pk> <hash> <class> <primary fpr>
    `[GNUPG:] VALIDSIG ${fpr} ${date} ${seconds(time)} 0 0 0 ${pk} ${hash} 00 ${fpr}`,
    g.trusted ? "[GNUPG:] TRUST_FULLY 0 codesign" : "[GNUPG:] TRUST_UNDEFINED 0 codesign",
    "",
  ].join("\n");
}

/** A signature that does not verify; the fingerprint when the signer certificate could be read. */
export function badSignatureStatus(b: {
  fingerprint?: string | undefined;
  signer?: string | undefined;
}): string {
  const fpr = b.fingerprint ? statusFingerprint(b.fingerprint) : "0000000000000000";
  return ["[GNUPG:] NEWSIG", `[GNUPG:] BADSIG ${fpr} ${oneLine(b.signer ?? "(unknown signer)")}`, ""].join(
    "\n",
  );
}

/** A signature that could not be checked at all (unreadable, not CMS). */
export function errorSignatureStatus(): string {
  // ERRSIG <keyid> <pkalgo> <hashalgo> <sig_class> <time> <rc>; rc 4: unknown algorithm / unusable.
  return ["[GNUPG:] NEWSIG", "[GNUPG:] ERRSIG 0000000000000000 0 0 00 0 4", ""].join("\n");
}
