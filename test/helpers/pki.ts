/**
 * A private PKI made by `openssl ca` (so every date is chosen), for the verify corpus: a root,
 * intermediates with pathlen:0, nameConstraints, a serverAuth-only EKU or expired, leaves good
 * and bad in each way a code-signing verifier must notice, and TSAs. EC P-256 keys: fast.
 */
import { execa } from "execa";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

export async function openssl(args: string[], cwd: string): Promise<string> {
  const r = await execa("openssl", args, { cwd, reject: false, stdin: "ignore" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

const CA_CNF = `
[ ca ]
default_ca = CA_default
[ CA_default ]
database = index.txt
new_certs_dir = newcerts
serial = serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
preserve = yes
[ policy_any ]
countryName = optional
organizationName = optional
commonName = supplied
[ root ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ int ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ ca_free ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ int_nc ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
nameConstraints = critical,permitted;dirName:nc_dn
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ nc_dn ]
O = Good
[ int_server ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ leaf ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ leaf_server ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
[ leaf_nods ]
basicConstraints = CA:FALSE
keyUsage = critical,keyEncipherment
extendedKeyUsage = codeSigning
[ leaf_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,keyCertSign
extendedKeyUsage = codeSigning
[ leaf_crit ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
1.3.6.1.4.1.55555.1 = critical,ASN1:NULL
[ tsa ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
[ tsa_noeku ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
`;

export interface Pki {
  dir: string;
  /** PEM file of a certificate by name; `${name}.key` is its key. */
  pem(name: string): string;
  key(name: string): string;
  /** A PEM file with the certificate and then its issuers up to (not including) the root. */
  chain(name: string): string;
  /** Arguments for `openssl cms -sign`: `-certfile` with the issuers below the root, if any. */
  certfile(name: string): string[];
}

interface Spec {
  name: string;
  subject: string;
  /** Issuer name, or "self". */
  issuer: string;
  ext: string;
  from: string;
  to: string;
}

const LONG = { from: "20200101000000Z", to: "20450101000000Z" };

/** Builds the PKI in `dir` (about 1 s: EC keys). */
export async function makePki(dir: string): Promise<Pki> {
  await mkdir(path.join(dir, "newcerts"), { recursive: true });
  await writeFile(path.join(dir, "index.txt"), "");
  await writeFile(path.join(dir, "serial"), "1000\n");
  await writeFile(path.join(dir, "ca.cnf"), CA_CNF);
  const specs: Spec[] = [
    { name: "root", subject: "/O=Test/CN=Test Root", issuer: "self", ext: "root", ...LONG },
    {
      name: "root-expired",
      subject: "/O=Test/CN=Expired Root",
      issuer: "self",
      ext: "root",
      from: "20150101000000Z",
      to: "20190101000000Z",
    },
    { name: "int", subject: "/O=Test/CN=Int pathlen0", issuer: "root", ext: "int", ...LONG },
    { name: "int-sub", subject: "/O=Test/CN=Sub under pathlen0", issuer: "int", ext: "ca_free", ...LONG },
    { name: "int-nc", subject: "/O=Good/CN=Int NC", issuer: "root", ext: "int_nc", ...LONG },
    { name: "int-server", subject: "/O=Test/CN=Int serverAuth", issuer: "root", ext: "int_server", ...LONG },
    {
      name: "int-expired",
      subject: "/O=Test/CN=Int expired",
      issuer: "root",
      ext: "ca_free",
      from: "20200101000000Z",
      to: "20220101000000Z",
    },
    {
      name: "int-under-expired-root",
      subject: "/O=Test/CN=Int old root",
      issuer: "root-expired",
      ext: "ca_free",
      ...LONG,
    },
    { name: "good", subject: "/O=Test/CN=Good signer", issuer: "int", ext: "leaf", ...LONG },
    { name: "good2", subject: "/O=Test/CN=Second signer", issuer: "int", ext: "leaf", ...LONG },
    {
      name: "expired",
      subject: "/O=Test/CN=Expired signer",
      issuer: "int",
      ext: "leaf",
      from: "20210101000000Z",
      to: "20220101000000Z",
    },
    {
      name: "notyet",
      subject: "/O=Test/CN=Future signer",
      issuer: "int",
      ext: "leaf",
      from: "20400101000000Z",
      to: "20440101000000Z",
    },
    { name: "server", subject: "/O=Test/CN=TLS server", issuer: "int", ext: "leaf_server", ...LONG },
    { name: "nods", subject: "/O=Test/CN=No digitalSignature", issuer: "int", ext: "leaf_nods", ...LONG },
    { name: "ca-signer", subject: "/O=Test/CN=CA as signer", issuer: "int", ext: "leaf_ca", ...LONG },
    { name: "crit", subject: "/O=Test/CN=Unknown critical", issuer: "int", ext: "leaf_crit", ...LONG },
    { name: "too-deep", subject: "/O=Test/CN=Below pathlen", issuer: "int-sub", ext: "leaf", ...LONG },
    { name: "nc-inside", subject: "/O=Good/CN=Inside NC", issuer: "int-nc", ext: "leaf", ...LONG },
    {
      name: "nc-not-prefix",
      subject: "/C=XX/O=Good/CN=Good not first",
      issuer: "int-nc",
      ext: "leaf",
      ...LONG,
    },
    { name: "nc-outside", subject: "/O=Evil/CN=Outside NC", issuer: "int-nc", ext: "leaf", ...LONG },
    {
      name: "under-server",
      subject: "/O=Test/CN=Under serverAuth CA",
      issuer: "int-server",
      ext: "leaf",
      ...LONG,
    },
    {
      name: "under-expired",
      subject: "/O=Test/CN=Under expired CA",
      issuer: "int-expired",
      ext: "leaf",
      ...LONG,
    },
    {
      name: "under-expired-root",
      subject: "/O=Test/CN=Under expired root",
      issuer: "int-under-expired-root",
      ext: "leaf",
      ...LONG,
    },
    { name: "tsa", subject: "/O=Test/CN=Trusted TSA", issuer: "int", ext: "tsa", ...LONG },
    { name: "tsa-noeku", subject: "/O=Test/CN=TSA without EKU", issuer: "int", ext: "tsa_noeku", ...LONG },
    { name: "self-signed", subject: "/O=Else/CN=Self-signed signer", issuer: "self", ext: "leaf", ...LONG },
    { name: "tsa-untrusted", subject: "/O=Else/CN=Untrusted TSA", issuer: "self", ext: "tsa", ...LONG },
  ];
  const issuerOf = new Map<string, string>();
  const hasIssuers = new Map<string, boolean>();
  for (const s of specs) {
    await openssl(
      ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${s.name}.key`],
      dir,
    );
    await openssl(["req", "-new", "-key", `${s.name}.key`, "-subj", s.subject, "-out", `${s.name}.csr`], dir);
    const signer =
      s.issuer === "self"
        ? ["-selfsign", "-keyfile", `${s.name}.key`]
        : ["-cert", `${s.issuer}.pem`, "-keyfile", `${s.issuer}.key`];
    await openssl(
      [
        "ca",
        "-config",
        "ca.cnf",
        "-batch",
        "-notext",
        "-preserveDN",
        ...signer,
        "-in",
        `${s.name}.csr`,
        "-out",
        `${s.name}.pem`,
        "-startdate",
        s.from,
        "-enddate",
        s.to,
        "-extensions",
        s.ext,
      ],
      dir,
    );
    issuerOf.set(s.name, s.issuer);
  }
  const pem = (name: string) => path.join(dir, `${name}.pem`);
  // chain files: the certificate, then its non-root issuers
  const { readFile } = await import("node:fs/promises");
  for (const s of specs) {
    const parts: string[] = [];
    let n: string | undefined = s.name;
    while (n && n !== "self" && !n.startsWith("root")) {
      parts.push(await readFile(pem(n), "utf8"));
      n = issuerOf.get(n);
    }
    await writeFile(path.join(dir, `${s.name}.chain.pem`), parts.join(""));
    await writeFile(path.join(dir, `${s.name}.issuers.pem`), parts.slice(1).join(""));
    hasIssuers.set(s.name, parts.length > 1);
  }
  return {
    dir,
    pem,
    key: (name) => path.join(dir, `${name}.key`),
    chain: (name) => path.join(dir, `${name}.chain.pem`),
    certfile: (name) => (hasIssuers.get(name) ? ["-certfile", path.join(dir, `${name}.issuers.pem`)] : []),
  };
}
