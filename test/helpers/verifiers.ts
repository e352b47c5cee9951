/**
 * The ecosystem's own verifiers, each failing the test unless it accepts the signature:
 * `openssl dgst -verify`, `openssl cms -verify`, `osslsigncode verify`, `jarsigner -verify -strict`.
 */
import { expect } from "vitest";
import { tool } from "./cli.js";

/** `openssl dgst -verify` of a raw signature over `file` with a PEM public key. */
export async function opensslDgstVerify(
  pub: string,
  file: string,
  sig: string,
  o: { hash?: string; sigopts?: string[] } = {},
): Promise<void> {
  const r = await tool("openssl", [
    "dgst",
    `-${o.hash ?? "sha256"}`,
    "-verify",
    pub,
    ...(o.sigopts ?? []),
    "-signature",
    sig,
    file,
  ]);
  expect(r.stdout.trim(), `${file}: ${r.stderr}`).toBe("Verified OK");
  expect(r.exitCode).toBe(0);
}

/** `openssl cms -verify` of a detached (with `content`) or attached signature. */
export async function opensslCmsVerify(
  sig: string,
  caFile: string,
  opts: { content?: string; pem?: boolean; out?: string } = {},
): Promise<void> {
  const r = await tool("openssl", [
    "cms",
    "-verify",
    "-binary",
    "-inform",
    opts.pem ? "PEM" : "DER",
    "-in",
    sig,
    ...(opts.content ? ["-content", opts.content] : []),
    "-CAfile",
    caFile,
    "-purpose",
    "any",
    "-out",
    opts.out ?? "/dev/null",
  ]);
  expect(r.stderr, `openssl cms -verify ${sig}`).toContain("Verification successful");
  expect(r.exitCode).toBe(0);
}

/** `osslsigncode verify` of an Authenticode file against a CA (or self-signed signer) file. */
export async function osslsigncodeVerify(file: string, ca: string): Promise<void> {
  const r = await tool("osslsigncode", ["verify", "-CAfile", ca, "-in", file]);
  expect(`${r.stdout}${r.stderr}`).toMatch(/^Succeeded/m);
}

/**
 * `jarsigner -verify -strict` with the given certificates as the only trust (a PKCS#12 store made
 * by keytool beside the jar). Returns jarsigner's report.
 */
export async function jarsignerVerify(file: string, ...cas: string[]): Promise<string> {
  const store = `${file}.trust.p12`;
  const storeArgs = ["-keystore", store, "-storetype", "PKCS12", "-storepass", "changeit"];
  for (const [i, ca] of cas.entries()) {
    const r = await tool("keytool", [
      "-importcert",
      "-noprompt",
      "-alias",
      `ca${i}`,
      "-file",
      ca,
      ...storeArgs,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
  }
  const r = await tool("jarsigner", ["-verify", "-strict", ...storeArgs, file]);
  expect(r.stdout, r.stderr).toMatch(/^jar verified\./m);
  expect(r.exitCode).toBe(0);
  return r.stdout;
}

/** `sbverify --cert`: the UEFI signing tools' own check of a SHA-256 Authenticode signature on an EFI image. */
export async function sbverify(file: string, cert: string): Promise<void> {
  const r = await tool("sbverify", ["--cert", cert, file]);
  expect(`${r.stdout}${r.stderr}`).toMatch(/^Signature verification OK/m);
  expect(r.exitCode).toBe(0);
}

/**
 * `openssl dgst -verify` of many raw signatures (one openssl process each, run by one shell
 * loop so a batch of thousands stays cheap). Fails naming every pair openssl does not accept.
 */
export async function opensslDgstVerifyAll(
  pub: string,
  pairs: ReadonlyArray<{ file: string; sig: string }>,
): Promise<void> {
  const script =
    'pub="$1"; shift; while [ "$#" -gt 1 ]; do ' +
    'out=$(openssl dgst -sha256 -verify "$pub" -signature "$2" "$1" 2>&1); ' +
    '[ "$out" = "Verified OK" ] || echo "BAD $1: $out"; shift 2; done';
  const r = await tool("sh", ["-c", script, "sh", pub, ...pairs.flatMap((p) => [p.file, p.sig])]);
  expect(r.stdout.trim(), r.stderr).toBe("");
  expect(r.exitCode).toBe(0);
}
