/**
 * codesign-git as git's gpg.x509.program, driven by the real git in a temporary repository with
 * its own global config (GIT_CONFIG_GLOBAL), HOME and SoftHSM2 dev token: commits and tags are
 * signed by the token key and verified with codesign's policy; the signature is also checked by
 * `openssl cms -verify` over the payload git signed.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, tool } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";
import { opensslCmsVerify } from "./helpers/verifiers.js";

const PROGRAM = path.join(ROOT, "bin", "codesign-git.js");
const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";

let t: TestToken;
let repo: string;
let rsaCert: string;
let ecCert: string;
let env: Record<string, string>;

/** git in the test repository; the PIN only by file, the anchors by $CODESIGN_CA unless overridden. */
const git = (args: string[], extra: Record<string, string> = {}, input?: string) =>
  tool("git", ["-C", repo, ...args], {
    env: { ...env, ...extra },
    ...(input !== undefined ? { input, stdin: undefined } : {}),
  });

async function mustGit(args: string[], extra: Record<string, string> = {}): Promise<string> {
  const r = await git(args, extra);
  if (r.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

async function fingerprintOf(cert: string): Promise<string> {
  const r = await tool("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]);
  return (/=([0-9A-F:]+)/.exec(r.stdout)?.[1] ?? "").replace(/:/g, "");
}

beforeAll(async () => {
  t = await createTestToken();
  rsaCert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
  const home = path.join(t.dir, "home");
  await mkdir(home);
  repo = path.join(t.dir, "repo");
  env = {
    ...t.env,
    HOME: home,
    GIT_CONFIG_GLOBAL: path.join(home, "gitconfig"),
    GIT_CONFIG_NOSYSTEM: "1",
    CODESIGN_PIN_FILE: t.dev.pinFile,
    CODESIGN_CA: [rsaCert, ecCert].join(path.delimiter),
  };
  const init = await tool("git", ["init", "-q", repo], { env });
  if (init.exitCode !== 0) throw new Error(init.stderr);
  // The three lines of docs/git.md, plus an identity.
  await mustGit(["config", "--global", "user.name", "Release Bot"]);
  await mustGit(["config", "--global", "user.email", "release@example.org"]);
  await mustGit(["config", "--global", "gpg.format", "x509"]);
  await mustGit(["config", "--global", "gpg.x509.program", PROGRAM]);
  await mustGit(["config", "--global", "user.signingkey", RSA]);
  await writeFile(path.join(repo, "README"), "hello\n");
  await mustGit(["add", "README"]);
}, 120_000);

afterAll(async () => {
  await t?.cleanup();
});

describe("git commit -S / verify-commit / log --show-signature", () => {
  it("signs a commit with the token key; git verifies it and reads signer, fingerprint and trust", async () => {
    await mustGit(["commit", "-q", "-S", "-m", "signed by the token"]);
    const object = await mustGit(["cat-file", "commit", "HEAD"]);
    expect(object).toMatch(/^gpgsig -----BEGIN SIGNED MESSAGE-----$/m);

    const v = await git(["verify-commit", "HEAD"]);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(v.stderr).toContain('Good signature from "CN=codesign dev RSA');

    const fpr = await fingerprintOf(rsaCert);
    const f = await mustGit(["log", "-1", "--format=%G?|%GS|%GF|%GT"]);
    expect(f.trim()).toBe(`G|CN=codesign dev RSA,O=codesign dev token|${fpr}|fully`);

    const shown = await mustGit(["log", "-1", "--show-signature"]);
    expect(shown).toContain("codesign-git: Good signature");
  });

  it("a forged commit (message changed, signature kept) is BAD: verify-commit fails, %G? is B", async () => {
    const object = await mustGit(["cat-file", "commit", "HEAD"]);
    const forged = object.replace("signed by the token", "forged");
    const w = await git(["hash-object", "-t", "commit", "-w", "--stdin"], {}, forged);
    const id = w.stdout.trim();
    const v = await git(["verify-commit", "--raw", id]);
    expect(v.exitCode).not.toBe(0);
    expect(v.stderr).toMatch(/^\[GNUPG:\] BADSIG /m);
    expect(v.stderr).not.toMatch(/GOODSIG/);
    expect((await mustGit(["log", "-1", "--format=%G?", id])).trim()).toBe("B");
  });

  it("without anchors the signer is not trusted: BADSIG; `git config codesign.ca` supplies them", async () => {
    const none = await git(["verify-commit", "HEAD"], { CODESIGN_CA: "" });
    expect(none.exitCode).not.toBe(0);
    expect(none.stderr).toMatch(/does not chain to a trust anchor/);
    expect(none.stderr).toContain("git config codesign.ca");
    await mustGit(["config", "codesign.ca", rsaCert]);
    try {
      const v = await git(["verify-commit", "--raw", "HEAD"], { CODESIGN_CA: "" });
      expect(v.exitCode, v.stderr).toBe(0);
      expect(v.stderr).toMatch(/^\[GNUPG:\] NEWSIG\n\[GNUPG:\] GOODSIG [0-9A-F]{64} /m);
      expect(v.stderr).toMatch(/^\[GNUPG:\] VALIDSIG [0-9A-F]{64} \d{4}-\d\d-\d\d \d+ /m);
      expect(v.stderr).toMatch(/^\[GNUPG:\] TRUST_FULLY /m);
    } finally {
      await mustGit(["config", "--unset", "codesign.ca"]);
    }
  });

  it("without a PIN the commit is refused; the program says why (exit 3)", async () => {
    const r = await git(["commit", "-q", "--allow-empty", "-S", "-m", "no pin"], { CODESIGN_PIN_FILE: "" });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/gpg failed to sign the data/);
    // git 2.39 does not repeat the program's stderr here (newer versions do): ask it directly.
    const direct = await tool(PROGRAM, ["--status-fd=2", "-bsau", RSA], {
      env: { ...env, CODESIGN_PIN_FILE: "" },
      input: "x",
      stdin: undefined,
    });
    expect(direct.exitCode).toBe(3);
    expect(direct.stderr).toMatch(/PIN/);
    expect(direct.stderr).not.toMatch(/SIG_CREATED/);
  });
});

describe("git tag -s / verify-tag", () => {
  it("signs a tag with an EC key; verify-tag and openssl cms -verify accept it", async () => {
    const r = await git(["tag", "-s", "v1.0", "-m", "release 1.0", "-u", EC]);
    expect(r.exitCode, r.stderr).toBe(0);
    const v = await git(["verify-tag", "v1.0"]);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(v.stderr).toContain('Good signature from "CN=codesign dev EC');

    // A tag object is the payload followed by the signature: check it with another verifier.
    const object = await mustGit(["cat-file", "tag", "v1.0"]);
    const at = object.indexOf("-----BEGIN SIGNED MESSAGE-----");
    expect(at).toBeGreaterThan(0);
    const payload = path.join(t.dir, "tag.payload");
    const sig = path.join(t.dir, "tag.pem");
    await writeFile(payload, object.slice(0, at));
    await writeFile(sig, object.slice(at).replace(/SIGNED MESSAGE/g, "CMS"));
    await opensslCmsVerify(sig, ecCert, { content: payload, pem: true });
  });
});

describe("the gpgsm arguments, parsed by yargs", () => {
  const run = (args: string[], input = "payload\n", extra: Record<string, string> = {}) =>
    tool(PROGRAM, args, { env: { ...env, ...extra }, input, stdin: undefined });

  it("-bsau KEY and -b -s -a -u KEY are the same request; the status goes to --status-fd", async () => {
    for (const args of [
      ["--status-fd=2", "-bsau", RSA],
      ["--status-fd", "2", "-b", "-s", "-a", "-u", RSA],
    ]) {
      const r = await run(args);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^-----BEGIN SIGNED MESSAGE-----\n[\s\S]+\n-----END SIGNED MESSAGE-----\n?$/);
      expect(r.stderr).toMatch(/^\[GNUPG:\] SIG_CREATED D 1 8 00 \d+ [0-9A-F]{64}$/m);
    }
  });

  it("--verify SIGFILE - over stdin: GOODSIG for the signed bytes, BADSIG for others", async () => {
    const s = await run(["--status-fd=2", "-bsau", EC], "exact bytes\n");
    const sig = path.join(t.dir, "direct.sig");
    await writeFile(sig, s.stdout);
    const good = await run(["--status-fd=1", "--verify", sig, "-"], "exact bytes\n");
    expect(good.exitCode, good.stderr).toBe(0);
    expect(good.stdout).toMatch(/^\[GNUPG:\] GOODSIG /m);
    const bad = await run(["--status-fd=1", "--verify", sig, "-"], "other bytes\n");
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toMatch(/^\[GNUPG:\] BADSIG /m);
    expect(bad.stderr).toMatch(/message digest differs/);
  });

  it("an unreadable signature is ERRSIG (exit 2); an unknown option is a usage error (exit 2)", async () => {
    const junk = path.join(t.dir, "junk.sig");
    await writeFile(junk, "not a signature\n");
    const e = await run(["--status-fd=1", "--verify", junk, "-"]);
    expect(e.exitCode).toBe(2);
    expect(e.stdout).toMatch(/^\[GNUPG:\] ERRSIG /m);
    const u = await run(["--status-fd=2", "-bsau", RSA, "--bogus"]);
    expect(u.exitCode).toBe(2);
    expect(u.stderr).toMatch(/bogus/);
    expect(await readFile(junk, "utf8")).toBe("not a signature\n");
  });
});
