/**
 * A test timestamp authority on 127.0.0.1 with a random port. Good answers are real RFC 3161
 * responses made by `openssl ts -reply` with a throw-away TSA CA; the fault modes are what real
 * TSAs do on a bad day: HTTP 500, a body that is not DER, no answer at all, a refusal (PKI status
 * rejection), and a replayed response (wrong nonce).
 */
import { execa } from "execa";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as pkijs from "pkijs";

export type TsaMode = "good" | "http500" | "garbage" | "hang" | "rejection" | "replay";

export interface Tsa {
  url: string;
  /** Requests seen so far. */
  requests: number;
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

export async function startTsa(mode: TsaMode | (() => TsaMode) = "good"): Promise<Tsa> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "codesign-tsa-"));
  const cnf = await makeTsaPki(dir);
  let first: Buffer | undefined;
  let n = 0;
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      n++;
      const m = typeof mode === "function" ? mode() : mode;
      void (async () => {
        if (m === "http500") return res.writeHead(500).end("internal error");
        if (m === "garbage")
          return res
            .writeHead(200, { "Content-Type": "application/timestamp-reply" })
            .end("<html>oops</html>");
        if (m === "hang") return void hanging.add(res);
        if (m === "rejection") {
          const resp = new pkijs.TimeStampResp({
            status: new pkijs.PKIStatusInfo({ status: pkijs.PKIStatus.rejection }),
          });
          return res
            .writeHead(200, { "Content-Type": "application/timestamp-reply" })
            .end(Buffer.from(resp.toSchema().toBER()));
        }
        const reqFile = path.join(dir, `q${n}.der`);
        const respFile = path.join(dir, `r${n}.der`);
        await writeFile(reqFile, Buffer.concat(chunks));
        await openssl(["ts", "-reply", "-config", cnf, "-queryfile", reqFile, "-out", respFile], dir);
        const answer = await readFile(respFile);
        first ??= answer;
        res
          .writeHead(200, { "Content-Type": "application/timestamp-reply" })
          .end(m === "replay" ? first : answer);
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
