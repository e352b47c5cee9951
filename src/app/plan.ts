/**
 * `dryRun(options)`: everything `sign(options)` would need, checked, and nothing signed or
 * written. Files, formats and outputs are planned as a run plans them; each input goes through
 * its format's own check (so an already signed Authenticode file is refused or skipped exactly
 * as it would be); the certificate, chain files and timestamp servers are tried; the token is
 * opened — without a login unless `login` is set, so a dry run costs no PIN try — and the key,
 * its certificate and its mechanisms are looked at. Problems are collected, not thrown, so one
 * report names them all.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { CodesignError, isCodesignError, type ErrorCode } from "../core/errors.js";
import { findPrivateKey, listKeys, type KeyInfo } from "../core/pkcs11/keys.js";
import { withToken } from "../core/pkcs11/token-key.js";
import { formatUri, parseUri } from "../core/pkcs11/uri.js";
import { codeSigningUsage } from "../core/pki/authenticode.js";
import { readCertificates, resolveSignerCertificate } from "../core/pki/certificate.js";
import { fetchTimestamp } from "../core/pki/timestamp.js";
import { describeCertificate } from "../core/pki/x509.js";
import {
  defaultScheme,
  schemeForKey,
  type HashName,
  type KeyType,
  type SignatureScheme,
} from "../core/signer.js";
import { inputSize } from "../core/util/files.js";
import { planOutputs, type BatchItem, type OutputStyle } from "./batch.js";
import type { TokenFormat } from "./formats/contract.js";
import { isLoginTool, type FormatName, type SignOptions } from "./options.js";
import { chooseFormat, refuseAuthenticodeOnly, skippedInputs, tokenFormat } from "./sign.js";

export interface Problem {
  code: ErrorCode | "UNEXPECTED";
  message: string;
  hint?: string;
}

export interface PlannedFile {
  input: string;
  /** Where the run would write (nothing is written by a dry run). */
  output: string;
  format: FormatName;
  /** The run would leave this file as it is (e.g. already signed, with skipSigned). */
  skipped?: boolean;
  reason?: string;
  problem?: Problem;
}

export interface PlannedKey {
  uri: string;
  /**
   * "private-key": the private key object was seen; "public-objects": only its public key was
   * (private keys are usually hidden until a login); "unchecked": not seen without a login.
   */
  seen: "private-key" | "public-objects" | "unchecked" | "not-found";
  label?: string;
  keyType?: string;
  bits?: number;
  curve?: string;
  alwaysAuthenticate?: boolean;
  /** The token's signing mechanisms for this key type (pkcs11-tool names). */
  mechanisms?: string[];
}

export interface PlannedCertificate {
  source: "file" | "token";
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  /** "no-eku": the certificate restricts nothing; "no": it has an EKU without codeSigning. */
  codeSigning: "yes" | "no" | "no-eku";
  /** Whether its public key is the key's; "unchecked" when the key's public half was not seen. */
  matchesKey: boolean | "unchecked";
}

export interface PlannedTimestamp {
  url: string;
  ok: boolean;
  ms: number;
  /** The TSA's time, from the checked test response. */
  genTime?: string;
  error?: string;
}

export interface DryRunReport {
  ok: boolean;
  dryRun: true;
  tool: FormatName;
  files: PlannedFile[];
  /** The token, when it was opened. */
  token?: { label: string; serial: string; module: string };
  loggedIn: boolean;
  key: PlannedKey;
  hash: HashName;
  scheme?: SignatureScheme;
  certificate?: PlannedCertificate;
  chain: Array<{ file: string; certificates: number }>;
  timestamps: PlannedTimestamp[];
  /** Everything that would make the run fail; the first decides the exit code. */
  problems: Problem[];
  /** Things worth knowing that are not problems. */
  notes: string[];
  ms: number;
}

/** The scheme for the key, or undefined with the reason added to the problems. */
function fittingScheme(
  keyType: KeyType,
  asked: SignatureScheme | undefined,
  problems: Problem[],
): SignatureScheme | undefined {
  try {
    return schemeForKey(keyType, asked);
  } catch (e) {
    problems.push(asProblem(e));
    return undefined;
  }
}

const asProblem = (e: unknown): Problem =>
  isCodesignError(e)
    ? { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) }
    : { code: "UNEXPECTED", message: e instanceof Error ? e.message : String(e) };

/** Seconds a dry run waits for each timestamp server: enough to see it answer, short enough to plan. */
const TSA_CHECK_MS = 5_000;

/**
 * Each TSA gets one real RFC 3161 request (a POST over random bytes, no retries, at most 5 s)
 * and its answer is checked as a signing run checks it: a HEAD would only show a web server.
 */
async function checkTimestampServers(o: SignOptions): Promise<PlannedTimestamp[]> {
  const urls = o.timestamp?.urls ?? [];
  const timeoutMs = Math.min((o.timestamp?.timeoutSeconds ?? 10) * 1000, TSA_CHECK_MS);
  return Promise.all(
    urls.map(async (url): Promise<PlannedTimestamp> => {
      const started = performance.now();
      let reason: string | undefined;
      try {
        const ts = await fetchTimestamp(
          new Uint8Array(randomBytes(32)),
          [url],
          { what: "timestamp server", retries: 0, timeoutMs, onFailure: (f) => (reason = f.reason) },
          // The TSA is judged as the real run judges it: chained to the same anchors.
          { tsaCa: o.timestamp?.tsaCa, allowUntrustedTsa: o.timestamp?.allowUntrustedTsa },
        );
        return {
          url,
          ok: true,
          ms: Math.round(performance.now() - started),
          genTime: ts.genTime.toISOString(),
        };
      } catch (e) {
        const error = reason ?? asProblem(e).message;
        return { url, ok: false, ms: Math.round(performance.now() - started), error };
      }
    }),
  );
}

/** The tokens a scheme can sign with: a hash-and-sign mechanism, or the raw one over a host digest. */
function mechanismsFor(scheme: SignatureScheme, hash: HashName, digestOnly: boolean): string[] {
  const H = hash.toUpperCase();
  const raw = { "rsa-pkcs1": "RSA-PKCS", "rsa-pss": "RSA-PKCS-PSS", ecdsa: "ECDSA", eddsa: "EDDSA" }[scheme];
  if (scheme === "eddsa" || digestOnly) return [raw];
  const combined = { "rsa-pkcs1": `${H}-RSA-PKCS`, "rsa-pss": `${H}-RSA-PKCS-PSS`, ecdsa: `ECDSA-${H}` }[
    scheme
  ];
  return [combined, raw];
}

/** The key URI without its PIN sources, and an environment without PIN variables: no login. */
function withoutPin(key: string): { key: string; env: NodeJS.ProcessEnv; hadPin: boolean } {
  const uri = parseUri(key);
  const hadPin = uri.query["pin-value"] !== undefined || uri.query["pin-source"] !== undefined;
  delete uri.query["pin-value"];
  delete uri.query["pin-source"];
  const env = { ...process.env };
  delete env["CODESIGN_PIN"];
  delete env["CODESIGN_PIN_FILE"];
  return { key: formatUri(uri), env, hadPin };
}

function describe(
  der: Uint8Array,
  source: "file" | "token",
  matchesKey: boolean | "unchecked",
): PlannedCertificate {
  const d = describeCertificate(der);
  return {
    source,
    subject: d.subject,
    issuer: d.issuer,
    serial: d.serialHex,
    notBefore: d.notBefore.toISOString(),
    notAfter: d.notAfter.toISOString(),
    codeSigning: codeSigningUsage(der),
    matchesKey,
  };
}

/** Validity and usage of the signer certificate, as problems and notes. */
function judgeCertificate(c: PlannedCertificate, problems: Problem[], notes: string[]): void {
  const now = Date.now();
  if (Date.parse(c.notAfter) < now) {
    problems.push({
      code: "INVALID_INPUT",
      message: `the signer certificate (${c.subject}) expired on ${c.notAfter}`,
      hint: "renew it; a timestamp keeps old signatures valid, but new ones need a valid certificate",
    });
  } else if (Date.parse(c.notBefore) > now) {
    problems.push({
      code: "INVALID_INPUT",
      message: `the signer certificate (${c.subject}) is not valid before ${c.notBefore}`,
      hint: "check the clock, or wait until it is valid",
    });
  } else if (Date.parse(c.notAfter) - now < 30 * 86_400_000) {
    notes.push(`the signer certificate expires on ${c.notAfter}, in less than 30 days`);
  }
  if (c.codeSigning === "no") {
    problems.push({
      code: "INVALID_INPUT",
      message: `the signer certificate (${c.subject}) has an extended key usage without codeSigning`,
      hint: "verifiers refuse code signed with it; use a code-signing certificate",
    });
  } else if (c.codeSigning === "no-eku") {
    notes.push("the signer certificate has no extended key usage (any use); Windows wants codeSigning");
  }
}

/** Checks everything a signing run with these options needs; signs and writes nothing. */
export async function dryRun(o: SignOptions): Promise<DryRunReport> {
  const started = performance.now();
  const problems: Problem[] = [];
  const notes: string[] = [];
  if (!o.key) {
    throw new CodesignError("USAGE", "no key was named", {
      hint: "give the key's RFC 7512 URI (`codesign keys` lists them), or a profile that names one",
    });
  }
  // Planning errors (mixed formats, outputs that collide) are usage errors, as in a run.
  const name = chooseFormat(o.files, o);
  refuseAuthenticodeOnly(name, o);
  let format: TokenFormat | undefined;
  let style: OutputStyle;
  if (isLoginTool(name)) {
    style = (await import("./formats/tool.js")).toolOutput(name, o);
  } else {
    format = await tokenFormat(name, o);
    style = format.output;
  }
  const items: BatchItem[] = planOutputs(o.files, {
    style,
    out: o.out,
    outDir: o.outDir,
    inPlace: o.inPlace,
  });
  if (o.outDir !== undefined && !existsSync(o.outDir))
    notes.push(`the output directory ${o.outDir} would be created`);

  const files: PlannedFile[] = [];
  for (const item of items) {
    const row: PlannedFile = { ...item, format: name };
    try {
      if (format) await format.check(item.input, o);
      else await inputSize(item.input);
    } catch (e) {
      row.problem = asProblem(e);
    }
    files.push(row);
  }
  if (format) {
    const checked = items.filter((_, i) => files[i]?.problem === undefined);
    try {
      const skipped = await skippedInputs(format, checked, o);
      for (const row of files) {
        const reason = skipped.get(row.input);
        if (reason !== undefined) Object.assign(row, { skipped: true, reason, output: row.input });
      }
    } catch (e) {
      problems.push(asProblem(e));
    }
  }

  // The servers are asked while the token is looked at; their problems are listed after its.
  const timestampsChecked = checkTimestampServers(o);
  const hash = o.hash ?? "sha256";
  const needsCertificate = format ? format.needsCertificate : true;
  let key: PlannedKey = { uri: o.key, seen: "unchecked" };
  let token: DryRunReport["token"];
  let loggedIn = false;
  let scheme: SignatureScheme | undefined;
  let certificate: PlannedCertificate | undefined;
  const login = o.login === true;
  const access = login
    ? { key: o.key, pinFile: o.pinFile, prompt: o.promptPin }
    : (() => {
        const bare = withoutPin(o.key);
        if (bare.hadPin)
          notes.push("the key URI's pin-value/pin-source was not used: no login without --login");
        return { key: bare.key, env: bare.env };
      })();
  try {
    await withToken(
      { ...access, module: o.module, moduleArgs: o.moduleArgs, login: login ? "required" : "if-pin" },
      async (t) => {
        loggedIn = t.loggedIn;
        token = { label: t.token.label, serial: t.token.serial, module: t.moduleChoice.path };
        let found: KeyInfo | undefined;
        try {
          found = findPrivateKey(t.session, t.mechanisms, t.uri);
          key = { ...key, seen: "private-key" };
        } catch (e) {
          if (!(isCodesignError(e) && e.code === "KEY_NOT_FOUND") || t.loggedIn) throw e;
          const publics = listKeys(t.session, t.mechanisms, t.uri).filter((k) => k.handle === undefined);
          if (publics.length > 1) {
            throw new CodesignError("AMBIGUOUS", `${publics.length} keys match ${o.key}`, {
              hint: "add id= to the URI (see `codesign keys`)",
            });
          }
          found = publics[0];
          key = { ...key, seen: found ? "public-objects" : "unchecked" };
          notes.push(
            found
              ? "the private key itself is hidden without a login: its public key was found; --login proves the key and the PIN"
              : "the key could not be checked without --login (the token shows no public object for it)",
          );
        }
        if (!found) return;
        key = {
          ...key,
          label: found.label,
          keyType: found.keyType,
          ...(found.bits === undefined ? {} : { bits: found.bits }),
          ...(found.curve === undefined ? {} : { curve: found.curve }),
          ...(key.seen === "private-key" ? { alwaysAuthenticate: found.alwaysAuthenticate === true } : {}),
          mechanisms: found.mechanisms,
        };
        const fitting = fittingScheme(found.keyType, o.mechanism, problems);
        scheme = fitting ?? o.mechanism ?? defaultScheme(found.keyType);
        if (fitting) {
          // Raw signatures sign a host digest; the other formats sign small data (signed attributes).
          const usable = mechanismsFor(fitting, hash, name === "raw");
          if (!usable.some((m) => found?.mechanisms.includes(m))) {
            problems.push({
              code: "MECHANISM_UNSUPPORTED",
              message: `the token offers none of ${usable.join(", ")} for ${scheme} with ${hash}`,
              hint: `it offers: ${found.mechanisms.join(", ") || "no signing mechanisms"}`,
            });
          }
        }
        if (needsCertificate || o.cert !== undefined) {
          const cert = await resolveSignerCertificate(found, o.cert);
          certificate = describe(cert.der, cert.source, found.spki ? true : "unchecked");
        }
      },
    );
  } catch (e) {
    problems.push(asProblem(e));
    if (isCodesignError(e) && e.code === "KEY_NOT_FOUND") key = { ...key, seen: "not-found" };
  }
  // A --cert file is still described when the key could not be looked at.
  if (!certificate && o.cert !== undefined && key.seen !== "private-key" && key.seen !== "public-objects") {
    try {
      const [der] = await readCertificates(o.cert);
      if (der) certificate = describe(der, "file", "unchecked");
    } catch (e) {
      problems.push(asProblem(e));
    }
  }
  if (certificate) judgeCertificate(certificate, problems, notes);

  const chain: DryRunReport["chain"] = [];
  for (const file of o.chain ?? []) {
    try {
      chain.push({ file, certificates: (await readCertificates(file)).length });
    } catch (e) {
      problems.push(asProblem(e));
    }
  }
  const timestamps = await timestampsChecked;
  if (timestamps.length > 0 && !timestamps.some((t) => t.ok)) {
    problems.push({
      code: "NETWORK",
      message: `no timestamp server answered: ${timestamps.map((t) => `${t.url}: ${t.error ?? "failed"}`).join("; ")}`,
      hint: "check the URLs and the network (proxy, firewall), or add another server with --timestamp",
    });
  } else {
    for (const t of timestamps.filter((x) => !x.ok)) {
      notes.push(`timestamp server ${t.url} did not answer (${t.error ?? "failed"}); another one did`);
    }
  }

  const fileProblems = files.filter((f) => f.problem !== undefined).length;
  return {
    ok: problems.length === 0 && fileProblems === 0,
    dryRun: true,
    tool: name,
    files,
    ...(token ? { token } : {}),
    loggedIn,
    key,
    hash,
    ...(scheme ? { scheme } : {}),
    ...(certificate ? { certificate } : {}),
    chain,
    timestamps,
    problems,
    notes,
    ms: Math.round(performance.now() - started),
  };
}
