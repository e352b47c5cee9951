/**
 * path.ts keeps each certificate's DER per object (path validation compares every anchor with the
 * leaf). The cache must give the bytes the certificate was made of — checked against OpenSSL's
 * own DER — and must not outlive a change of the fields the encoding is built from.
 */
import { execa } from "execa";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as pkijs from "pkijs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { certDer, subjectOf } from "../src/core/pki/path.js";

let dir: string;
const ders: Uint8Array[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "codesign-certder-"));
  for (const cn of ["first", "second"]) {
    const key = path.join(dir, `${cn}.key`);
    const der = path.join(dir, `${cn}.der`);
    await execa("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-subj",
      `/CN=${cn}`,
      "-days",
      "2",
      "-outform",
      "DER",
      "-out",
      der,
    ]);
    ders.push(new Uint8Array(await readFile(der)));
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const parse = (der: Uint8Array) => pkijs.Certificate.fromBER(Uint8Array.from(der).buffer);

describe("certDer", () => {
  it("gives OpenSSL's DER, the same on every call, and a copy the caller may change", () => {
    const [first] = ders as [Uint8Array];
    const cert = parse(first);
    const a = certDer(cert);
    expect(Buffer.from(a).equals(Buffer.from(first))).toBe(true);
    a.fill(0);
    const b = certDer(cert);
    expect(Buffer.from(b).equals(Buffer.from(first))).toBe(true);
    expect(subjectOf(cert)).toBe("CN=first");
  });

  it("encodes afresh when the certificate is given another TBS, signature or algorithm", () => {
    const [first, second] = ders as [Uint8Array, Uint8Array];
    const cert = parse(first);
    const other = parse(second);
    expect(Buffer.from(certDer(cert)).equals(Buffer.from(first))).toBe(true);
    // All three fields of the other certificate: the result is exactly its DER.
    cert.tbsView = other.tbsView;
    expect(Buffer.from(certDer(cert)).equals(Buffer.from(first))).toBe(false);
    cert.signatureAlgorithm = other.signatureAlgorithm;
    cert.signatureValue = other.signatureValue;
    expect(Buffer.from(certDer(cert)).equals(Buffer.from(second))).toBe(true);
    expect(subjectOf(cert)).toBe("CN=second");
  });
});
