/**
 * A private CA that publishes revocation: root → intermediate → leaves, each CA with an
 * `openssl ca` database; `openssl ocsp` responders answering from the intermediate's database
 * (a delegated responder with id-kp-OCSPSigning, the intermediate itself, and a forger whose
 * key the CA never certified); CRLs made by `openssl ca -gencrl`. One node:http server (on a
 * free port) is the address every certificate names: it serves the CRLs and hands each OCSP
 * request to its responder, so the certificates can be made before the responders start (an
 * `openssl ocsp` reads its index once, at start). Leaves carry the public key of a token key.
 */
import { execa, type ResultPromise } from "execa";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { openssl } from "./pki.js";

/** The leaves, by how their revocation is published and what it says. */
export const LEAVES = {
  /** AIA → delegated responder, CDP → the intermediate's CRL; good. */
  good: "leaf_good",
  /** AIA → a responder that signs as the intermediate itself; good. */
  direct: "leaf_direct",
  /** As good, but revoked (OCSP says so first). */
  revokedOcsp: "leaf_good",
  /** CDP only; revoked (the CRL says so). */
  revokedCrl: "leaf_crl",
  /** AIA and CDP on a port where nothing listens. */
  down: "leaf_down",
  /** Neither AIA nor CDP. */
  bare: "leaf_bare",
  /** AIA → the delegated responder, which never heard of it (not in the CA's database). */
  unknown: "leaf_unknown",
  /** AIA → HTTP 500, CDP → an 11 MiB answer (fault injection by the server). */
  broken: "leaf_broken",
  /** AIA → a responder signing with a key the CA never certified. */
  forged: "leaf_forged",
} as const;
export type LeafName = keyof typeof LEAVES;

export interface RevocationPki {
  dir: string;
  root: string;
  int: string;
  /** The leaf certificate (PEM) of each case. */
  leaf: Record<LeafName, string>;
  /** The intermediate's CRL (PEM), as `openssl verify -crl_check` wants it. */
  intCrlPem: string;
  /** Base URL of the server the certificates name. */
  url: string;
  /** The delegated responder's port, for `openssl ocsp -url` as the independent check. */
  responderUrl: string;
  /** Requests the server has seen for "METHOD /path". */
  hits(route: string): number;
  close(): Promise<void>;
}

const CA_CNF = (db: string) => `
[ ca ]
default_ca = d
[ d ]
database = ${db}/index.txt
new_certs_dir = ${db}
serial = ${db}/serial
default_md = sha256
policy = p
unique_subject = no
email_in_dn = no
default_crl_days = 7
[ p ]
commonName = supplied
organizationName = optional
`;

const EXT = (base: string, dead: string) => `
[ int ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:${base}/root.crl
[ ocsp ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = OCSPSigning
[ evil ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = OCSPSigning
[ leaf_base ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ leaf_good ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:${base}/ocsp
crlDistributionPoints = URI:${base}/int.crl
[ leaf_direct ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:${base}/ocsp-ca
[ leaf_crl ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:${base}/int.crl
[ leaf_down ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:${dead}/ocsp
crlDistributionPoints = URI:${dead}/int.crl
[ leaf_unknown ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:${base}/ocsp
[ leaf_broken ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:${base}/http500
crlDistributionPoints = URI:${base}/huge.crl
[ leaf_bare ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
[ leaf_forged ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:${base}/forged
[ root ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

/** A port nothing listens on: bound, then released. */
async function deadPort(): Promise<number> {
  const s = http.createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

interface Responder {
  proc: ResultPromise;
  url: string;
}

/** `openssl ocsp` as a responder on a free port; resolves when it says where it listens. */
async function startResponder(dir: string, args: string[]): Promise<Responder> {
  const proc = execa(
    "openssl",
    ["ocsp", "-index", "int/index.txt", "-port", "0", "-CA", "int.pem", "-ignore_err", ...args],
    { cwd: dir, reject: false, stdin: "ignore", buffer: false },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let seen = "";
    proc.stdout?.on("data", (chunk: Buffer) => {
      seen += chunk.toString();
      const m = /ACCEPT \S*:(\d+)/.exec(seen);
      if (m) resolve(Number(m[1]));
    });
    void proc.then((r) => reject(new Error(`openssl ocsp ended: ${String(r.stderr ?? "")}`)));
  });
  return { proc, url: `http://127.0.0.1:${port}` };
}

/** Builds the CA, its revocation data, the responders and the server. `pubkey`: the leaves' key (PEM). */
export async function makeRevocationPki(dir: string, pubkey: string): Promise<RevocationPki> {
  const routes = new Map<
    string,
    (body: Buffer) => Promise<{ type: string; body: Uint8Array; status?: number }>
  >();
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const key = `${req.method ?? ""} ${req.url ?? ""}`;
      hits.set(key, (hits.get(key) ?? 0) + 1);
      const route = routes.get(key);
      if (!route) {
        res.writeHead(404).end();
        return;
      }
      route(Buffer.concat(chunks)).then(
        (a) => res.writeHead(a.status ?? 200, { "Content-Type": a.type }).end(Buffer.from(a.body)),
        () => res.writeHead(502).end(),
      );
    });
  });
  const port = await listen(server);
  const base = `http://127.0.0.1:${port}`;
  const dead = `http://127.0.0.1:${await deadPort()}`;

  for (const db of ["rootdb", "int"]) {
    await mkdir(path.join(dir, db), { recursive: true });
    await writeFile(path.join(dir, db, "index.txt"), "");
    await writeFile(path.join(dir, db, "serial"), db === "int" ? "2000\n" : "1000\n");
    await writeFile(path.join(dir, `${db}.cnf`), CA_CNF(db));
  }
  await writeFile(path.join(dir, "ext.cnf"), EXT(base, dead));
  const ca = (db: string, args: string[]) => openssl(["ca", "-config", `${db}.cnf`, "-batch", ...args], dir);

  await openssl(
    ["req", "-x509", ...EC, "-keyout", "root.key", "-subj", "/O=Rev/CN=Rev Root", "-days", "3650"].concat([
      "-config",
      "ext.cnf",
      "-extensions",
      "root",
      "-out",
      "root.pem",
    ]),
    dir,
  );
  const issue = async (db: string, issuer: string, name: string, subject: string, ext: string) => {
    await openssl(
      ["req", "-new", ...EC, "-keyout", `${name}.key`, "-subj", subject, "-out", `${name}.csr`],
      dir,
    );
    await ca(db, [
      "-notext",
      "-cert",
      `${issuer}.pem`,
      "-keyfile",
      `${issuer}.key`,
      "-in",
      `${name}.csr`,
      "-out",
      `${name}.pem`,
      "-days",
      "365",
      "-extfile",
      "ext.cnf",
      "-extensions",
      ext,
    ]);
  };
  await issue("rootdb", "root", "int", "/O=Rev/CN=Rev Intermediate", "int");
  await issue("int", "int", "ocsp", "/O=Rev/CN=Rev OCSP responder", "ocsp");
  await openssl(
    [
      "req",
      "-x509",
      ...EC,
      "-keyout",
      "evil.key",
      "-subj",
      "/CN=Rev Intermediate/O=Rev",
      "-days",
      "30",
    ].concat(["-config", "ext.cnf", "-extensions", "evil", "-out", "evil.pem"]),
    dir,
  );

  // Leaves: the token's public key in a certificate the intermediate signs (the CSR is a
  // throwaway: only its subject is used), then entered in the intermediate's database.
  const leaf = {} as Record<LeafName, string>;
  let serial = 0x3000;
  for (const [name, ext] of Object.entries(LEAVES) as Array<[LeafName, string]>) {
    await openssl(
      ["req", "-new", ...EC, "-keyout", "throwaway.key", "-subj", `/O=Rev/CN=Leaf ${name}`].concat([
        "-out",
        `${name}.csr`,
      ]),
      dir,
    );
    await openssl(
      [
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "int.pem",
        "-CAkey",
        "int.key",
        "-force_pubkey",
        pubkey,
      ].concat([
        "-set_serial",
        String(serial++),
        "-days",
        "365",
        "-extfile",
        "ext.cnf",
        "-extensions",
        ext,
        "-out",
        `${name}.pem`,
      ]),
      dir,
    );
    if (name !== "unknown")
      await ca("int", ["-cert", "int.pem", "-keyfile", "int.key", "-valid", `${name}.pem`]);
    leaf[name] = path.join(dir, `${name}.pem`);
  }
  for (const name of ["revokedOcsp", "revokedCrl"]) {
    await ca("int", [
      "-cert",
      "int.pem",
      "-keyfile",
      "int.key",
      "-revoke",
      `${name}.pem`,
      "-crl_reason",
      "keyCompromise",
    ]);
  }
  await ca("int", ["-cert", "int.pem", "-keyfile", "int.key", "-gencrl", "-out", "int.crl.pem"]);
  await ca("rootdb", ["-cert", "root.pem", "-keyfile", "root.key", "-gencrl", "-out", "root.crl.pem"]);
  await openssl(["crl", "-in", "int.crl.pem", "-outform", "DER", "-out", "int.crl"], dir);

  const responders = [
    await startResponder(dir, ["-rsigner", "ocsp.pem", "-rkey", "ocsp.key"]),
    await startResponder(dir, ["-rsigner", "int.pem", "-rkey", "int.key"]),
    await startResponder(dir, ["-rsigner", "evil.pem", "-rkey", "evil.key"]),
  ];
  const relay = (r: Responder) => async (body: Buffer) => {
    const a = await fetch(r.url, {
      method: "POST",
      headers: { "Content-Type": "application/ocsp-request" },
      body,
    });
    return { type: "application/ocsp-response", body: new Uint8Array(await a.arrayBuffer()) };
  };
  routes.set("POST /ocsp", relay(responders[0] as Responder));
  routes.set("POST /ocsp-ca", relay(responders[1] as Responder));
  routes.set("POST /forged", relay(responders[2] as Responder));
  const intCrl = new Uint8Array(await readFile(path.join(dir, "int.crl")));
  const rootCrl = new Uint8Array(await readFile(path.join(dir, "root.crl.pem")));
  routes.set("GET /int.crl", () => Promise.resolve({ type: "application/pkix-crl", body: intCrl }));
  routes.set("GET /root.crl", () => Promise.resolve({ type: "application/pkix-crl", body: rootCrl }));
  routes.set("POST /http500", () =>
    Promise.resolve({ type: "text/plain", body: new Uint8Array(10), status: 500 }),
  );
  routes.set("GET /huge.crl", () =>
    Promise.resolve({ type: "application/pkix-crl", body: new Uint8Array(11 * 1024 * 1024).fill(0x30) }),
  );

  return {
    dir,
    root: path.join(dir, "root.pem"),
    int: path.join(dir, "int.pem"),
    leaf,
    intCrlPem: path.join(dir, "int.crl.pem"),
    url: base,
    responderUrl: (responders[0] as Responder).url,
    hits: (route) => hits.get(route) ?? 0,
    async close() {
      for (const r of responders) r.proc.kill();
      await Promise.all(responders.map((r) => r.proc));
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
