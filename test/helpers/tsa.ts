/**
 * A test timestamp authority on 127.0.0.1 with a random port. Good answers are real RFC 3161
 * responses made by `openssl ts -reply` with a throw-away TSA CA; the fault modes are what real
 * TSAs do on a bad day: HTTP 500, a body that is not DER, no answer at all, a refusal (PKI status
 * rejection), a replay of an earlier good answer, answers with another nonce or for other data
 * (wrong imprint), and a token whose signature does not verify. Nothing is mocked: each
 * response, faulty or not, is a real `openssl ts -reply` answer or an HTTP failure.
 */
import * as asn1js from "asn1js";
import { execa } from "execa";
import { createHash, webcrypto } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as pkijs from "pkijs";

export type TsaMode =
  | "good"
  | "http500"
  | "garbage"
  | "hang"
  | "rejection"
  | "replay"
  | "wrong-imprint"
  | "wrong-nonce"
  | "bad-signature"
  | "huge"
  | "redirect";

export interface Tsa {
  url: string;
  /** Requests seen so far, in all modes. */
  requests: number;
  /** Requests seen so far per mode. */
  requestsIn(mode: TsaMode): number;
  /** The most requests it was answering at one time (from a request's arrival to its answer). */
  maxConcurrent: number;
  /** The TSA's CA certificate (PEM file) for `openssl ts -verify -CAfile`. */
  caFile: string;
  /** The TSA's own certificate (PEM file). */
  certFile: string;
  close(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const r = await execa("openssl", args, { cwd, reject: false, stdin: "ignore" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

/** A throw-away TSA CA and TSA certificate (extendedKeyUsage critical timeStamping). */
async function makeTsaPki(dir: string): Promise<string> {
  await openssl(
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-subj",
      "/CN=codesign test TSA CA",
      "-days",
      "2",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  await openssl(
    [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "tsa.key",
      "-out",
      "tsa.csr",
      "-subj",
      "/CN=codesign test TSA",
    ],
    dir,
  );
  await writeFile(
    path.join(dir, "ext.cnf"),
    "extendedKeyUsage=critical,timeStamping\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
  );
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      "tsa.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "tsa.pem",
      "-days",
      "2",
      "-extfile",
      "ext.cnf",
    ],
    dir,
  );
  const cnf = path.join(dir, "ts.cnf");
  await writeFile(path.join(dir, "serial"), "01\n");
  await writeFile(
    cnf,
    [
      "[ tsa ]",
      "default_tsa = tsa_config",
      "[ tsa_config ]",
      `serial = ${path.join(dir, "serial")}`,
      "crypto_device = builtin",
      `signer_cert = ${path.join(dir, "tsa.pem")}`,
      `certs = ${path.join(dir, "tsa.pem")}`,
      `signer_key = ${path.join(dir, "tsa.key")}`,
      "signer_digest = sha256",
      "default_policy = 1.2.3.4.1",
      "digests = sha256, sha384, sha512",
      "accuracy = secs:1",
      "ess_cert_id_alg = sha256",
      "",
    ].join("\n"),
  );
  return cnf;
}

/** The same request with another imprint (the SHA-256 of other data) or another nonce. */
function altered(query: Buffer, what: "imprint" | "nonce"): Buffer {
  const req = pkijs.TimeStampReq.fromBER(new Uint8Array(query).buffer);
  if (what === "imprint") {
    req.messageImprint.hashedMessage = new asn1js.OctetString({
      valueHex: new Uint8Array(createHash("sha256").update("other data").digest()).buffer,
    });
  } else {
    req.nonce = new asn1js.Integer({ value: 4242 });
  }
  return Buffer.from(req.toSchema().toBER());
}

export interface TsaOptions {
  /** Milliseconds every answer waits before it is made, as a distant server's round trip would. */
  delayMs?: number;
  /**
   * Good answers made in this process (pkijs and WebCrypto with the same TSA key and certificate)
   * instead of by `openssl ts -reply`: a process start per answer costs ~10–30 ms of CPU, which a
   * benchmark of the client must not measure. Tests keep openssl's answers.
   */
  inProcess?: boolean;
}

const OID_TST_INFO = "1.2.840.113549.1.9.16.1.4";

/** A granted TimeStampResp for `query`, signed in-process (see TsaOptions.inProcess). */
async function replyInProcess(
  query: Buffer,
  serial: number,
  key: webcrypto.CryptoKey,
  cert: pkijs.Certificate,
  certDer: Buffer,
): Promise<Buffer> {
  const req = pkijs.TimeStampReq.fromBER(new Uint8Array(query).buffer);
  const tst = new pkijs.TSTInfo({
    version: 1,
    policy: "1.2.3.4.1",
    messageImprint: req.messageImprint,
    serialNumber: new asn1js.Integer({ value: serial }),
    genTime: new Date(),
    ...(req.nonce ? { nonce: req.nonce } : {}),
  });
  const tstDer = tst.toSchema().toBER();
  const digest = createHash("sha256").update(new Uint8Array(tstDer)).digest();
  // ESS signingCertificateV2 (RFC 5035): the TSA certificate's SHA-256, as openssl ts -verify wants.
  const essCertIdV2 = new asn1js.Sequence({
    value: [
      new asn1js.Sequence({
        value: [
          new asn1js.Sequence({
            value: [
              new asn1js.OctetString({
                valueHex: new Uint8Array(createHash("sha256").update(certDer).digest()).buffer,
              }),
            ],
          }),
        ],
      }),
    ],
  });
  const signed = new pkijs.SignedData({
    version: 3,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: OID_TST_INFO,
      eContent: new asn1js.OctetString({ valueHex: tstDer }),
    }),
    certificates: [cert],
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
        signedAttrs: new pkijs.SignedAndUnsignedAttributes({
          type: 0,
          attributes: [
            new pkijs.Attribute({
              type: "1.2.840.113549.1.9.3",
              values: [new asn1js.ObjectIdentifier({ value: OID_TST_INFO })],
            }),
            new pkijs.Attribute({
              type: "1.2.840.113549.1.9.4",
              values: [new asn1js.OctetString({ valueHex: new Uint8Array(digest).buffer })],
            }),
            new pkijs.Attribute({ type: "1.2.840.113549.1.9.16.2.47", values: [essCertIdV2] }),
          ],
        }),
      }),
    ],
  });
  await signed.sign(key, 0, "SHA-256");
  const resp = new pkijs.TimeStampResp({
    status: new pkijs.PKIStatusInfo({ status: pkijs.PKIStatus.granted }),
    timeStampToken: new pkijs.ContentInfo({
      contentType: "1.2.840.113549.1.7.2",
      content: signed.toSchema(true),
    }),
  });
  return Buffer.from(resp.toSchema().toBER());
}

/** The TSA's key and certificate, for in-process answers. */
async function loadSigner(
  dir: string,
): Promise<{ key: webcrypto.CryptoKey; cert: pkijs.Certificate; certDer: Buffer }> {
  const pem = (text: string) =>
    Buffer.from(text.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
  const keyDer = pem(await readFile(path.join(dir, "tsa.key"), "utf8"));
  const certDer = pem(await readFile(path.join(dir, "tsa.pem"), "utf8"));
  const key = await webcrypto.subtle.importKey(
    "pkcs8",
    keyDer,
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return { key, cert: pkijs.Certificate.fromBER(new Uint8Array(certDer).buffer), certDer };
}

export async function startTsa(
  mode: TsaMode | (() => TsaMode) = "good",
  opts: TsaOptions = {},
): Promise<Tsa> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "codesign-tsa-"));
  const cnfText = await readFile(await makeTsaPki(dir), "utf8");
  const signer = opts.inProcess ? await loadSigner(dir) : undefined;
  let first: Buffer | undefined;
  let n = 0;
  const perMode = new Map<TsaMode, number>();
  const hanging = new Set<http.ServerResponse>();
  let inFlight = 0;
  let maxConcurrent = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const id = ++n; // concurrent requests each get their own files
      maxConcurrent = Math.max(maxConcurrent, ++inFlight);
      res.on("close", () => inFlight--);
      const asked = typeof mode === "function" ? mode() : mode;
      // "redirect": a 307 to the same server, which then answers well
      const m: TsaMode = asked === "redirect" && req.url?.includes("redirected") ? "good" : asked;
      perMode.set(m, (perMode.get(m) ?? 0) + 1);
      void (async () => {
        if (opts.delayMs) await new Promise((resolve) => setTimeout(resolve, opts.delayMs));
        if (m === "http500") return res.writeHead(500).end("internal error");
        if (m === "garbage")
          return res
            .writeHead(200, { "Content-Type": "application/timestamp-reply" })
            .end("<html>oops</html>");
        if (m === "hang") return void hanging.add(res);
        if (m === "redirect") return res.writeHead(307, { Location: "/tsa?redirected" }).end();
        if (m === "huge") {
          // 2 MiB, streamed without a Content-Length: only an incremental bound stops it
          res.writeHead(200, { "Content-Type": "application/timestamp-reply" });
          for (let i = 0; i < 32; i++) res.write(Buffer.alloc(64 * 1024, 0x30));
          return res.end();
        }
        if (m === "rejection") {
          const resp = new pkijs.TimeStampResp({
            status: new pkijs.PKIStatusInfo({ status: pkijs.PKIStatus.rejection }),
          });
          return res
            .writeHead(200, { "Content-Type": "application/timestamp-reply" })
            .end(Buffer.from(resp.toSchema().toBER()));
        }
        if (signer && m === "good") {
          const answer = await replyInProcess(
            Buffer.concat(chunks),
            id,
            signer.key,
            signer.cert,
            signer.certDer,
          );
          return res.writeHead(200, { "Content-Type": "application/timestamp-reply" }).end(answer);
        }
        const reqFile = path.join(dir, `q${id}.der`);
        const respFile = path.join(dir, `r${id}.der`);
        await writeFile(
          reqFile,
          m === "wrong-imprint"
            ? altered(Buffer.concat(chunks), "imprint")
            : m === "wrong-nonce"
              ? altered(Buffer.concat(chunks), "nonce")
              : Buffer.concat(chunks),
        );
        // Each reply its own serial file: concurrent `openssl ts -reply` runs would race on one.
        const serial = path.join(dir, `serial${id}`);
        const config = path.join(dir, `ts${id}.cnf`);
        const hex = id.toString(16);
        await writeFile(serial, `${hex.length % 2 ? "0" : ""}${hex}\n`); // openssl wants whole bytes
        await writeFile(config, cnfText.replace(/^serial = .*$/m, `serial = ${serial}`));
        await openssl(["ts", "-reply", "-config", config, "-queryfile", reqFile, "-out", respFile], dir);
        const answer = await readFile(respFile);
        if (m === "good") first ??= answer;
        // The SignerInfo's signature is the last element openssl writes: its last byte flipped
        // keeps the DER valid and breaks the TSA's signature.
        if (m === "bad-signature") answer.writeUInt8((answer.at(-1) ?? 0) ^ 0x01, answer.length - 1);
        res
          .writeHead(200, { "Content-Type": "application/timestamp-reply" })
          .end(m === "replay" ? (first ?? answer) : answer);
      })().catch((e: Error) => res.writeHead(599).end(e.message));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const tsa: Tsa = {
    url: `http://127.0.0.1:${port}/tsa`,
    get requests() {
      return n;
    },
    requestsIn: (m) => perMode.get(m) ?? 0,
    get maxConcurrent() {
      return maxConcurrent;
    },
    caFile: path.join(dir, "ca.pem"),
    certFile: path.join(dir, "tsa.pem"),
    async close() {
      for (const r of hanging) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
  return tsa;
}

/** A URL on 127.0.0.1 where nothing listens (a port just bound and released). */
export async function closedPortUrl(): Promise<string> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}/tsa`;
}

// ---------------------------------------------------------------------------------------------
// Independent checks: what codesign timestamps, verified by openssl.

/** The first SignerInfo of a DER or PEM CMS file. */
export async function signerInfoOf(sigFile: string): Promise<pkijs.SignerInfo> {
  const bytes = await readFile(sigFile);
  const text = bytes.toString("latin1");
  const der = text.startsWith("-----BEGIN ")
    ? Buffer.from(text.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64")
    : bytes;
  const info = pkijs.ContentInfo.fromBER(new Uint8Array(der).buffer);
  const si = new pkijs.SignedData({ schema: info.content }).signerInfos[0];
  if (!si) throw new Error(`${sigFile} holds no SignerInfo`);
  return si;
}

/**
 * The embedded TimeStampToken and the signature value it covers, written out and checked by
 * `openssl ts -verify -token_in -data` against the TSA's CA; fails the test otherwise.
 */
export async function opensslTsVerify(sigFile: string, tsa: Tsa): Promise<void> {
  const si = await signerInfoOf(sigFile);
  const attr = si.unsignedAttrs?.attributes.find((a) => a.type === "1.2.840.113549.1.9.16.2.14");
  if (!attr?.values[0]) throw new Error(`no timestamp token in ${sigFile}`);
  const tokenFile = `${sigFile}.tst`;
  const valueFile = `${sigFile}.sigvalue`;
  await writeFile(tokenFile, Buffer.from(attr.values[0].toBER()));
  await writeFile(valueFile, Buffer.from(si.signature.valueBlock.valueHexView));
  const r = await execa(
    "openssl",
    [
      "ts",
      "-verify",
      "-in",
      tokenFile,
      "-token_in",
      "-data",
      valueFile,
      // No -untrusted: the TSA certificate must be in the token (certReq true).
      "-CAfile",
      tsa.caFile,
    ],
    { reject: false, stdin: "ignore" },
  );
  if (!r.stdout.includes("Verification: OK"))
    throw new Error(`openssl ts -verify of ${sigFile} failed: ${r.stdout} ${r.stderr}`);
}
