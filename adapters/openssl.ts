/**
 * openssl with the libp11 engine: `dgst -sign` (raw) or `cms -sign` (detached CMS). The engine
 * config is generated into the job's private directory and loaded with OPENSSL_CONF; the PIN goes
 * by `-passin env:` (the child's environment only).
 */
import { readFile, writeFile } from "node:fs/promises";
import type { Secret } from "../src/core/pkcs11/pin.js";
import type { HashName } from "../src/core/signer.js";
import path from "node:path";
import type { SignJob, SigningAdapter } from "./contract.js";
import { CodesignError } from "../src/core/errors.js";
import { opensslEngineConfig, LIBP11_ENGINE } from "../templates/openssl-engine.js";
import { findTool, lastWords, oncePerKey, runTool, runToolRaw } from "./run.js";
import { safePath } from "./osslsigncode.js";

const PIN_VAR = "CODESIGN_OPENSSL_PIN";

export const opensslVersion = oncePerKey(async (toolPath?: string): Promise<string> => {
  const out = await runToolRaw({ tool: "openssl", file: findTool("openssl", toolPath), args: ["version"] });
  const v = /OpenSSL\s+(\d+\.\d+\.\d+)/.exec(out.stdout)?.[1];
  if (!v) throw new CodesignError("TOOL_FAILED", `cannot tell the OpenSSL version: ${lastWords(out)}`);
  return v;
});

/** OpenSSL 3.0.0–3.0.8 mishandles network PKCS#11 modules (seed 002). */
export function affectedByEarly30Bug(v: string): boolean {
  const [a, b, c] = v.split(".").map(Number);
  return a === 3 && b === 0 && (c ?? 0) <= 8;
}

/** libp11 reads at most this many bytes of PIN; a longer one fails its login. */
export const LIBP11_PIN_MAX = 32;

/** Why openssl with the libp11 engine cannot log in with this PIN, or undefined. */
export function opensslPinProblem(pin: string): string | undefined {
  const bytes = Buffer.byteLength(pin, "utf8");
  if (bytes > LIBP11_PIN_MAX) {
    return `libp11 (the OpenSSL engine) takes at most ${LIBP11_PIN_MAX} bytes of PIN, and this one has ${bytes}: its login would fail`;
  }
  return undefined;
}

/**
 * One real signature through the engine, as `--tool openssl` makes them (config, `-passin env:`),
 * for `codesign doctor`: proves that openssl loads the module and the key. Returns the signature.
 */
export async function engineTestSignature(o: {
  modulePath: string;
  keyUri: string;
  pin: Secret;
  dir: string;
  hash: HashName;
}): Promise<Buffer> {
  const conf = path.join(o.dir, "openssl-engine.cnf");
  const data = path.join(o.dir, "doctor.bin");
  const sig = path.join(o.dir, "doctor.sig");
  await writeFile(conf, opensslEngineConfig({ module: o.modulePath }), { mode: 0o600 });
  await writeFile(data, "codesign doctor: a test signature through the libp11 engine\n");
  await runTool({
    tool: "openssl",
    file: findTool("openssl"),
    args: ["dgst", `-${o.hash}`, "-engine", "pkcs11", "-keyform", "engine", "-sign", o.keyUri].concat([
      "-passin",
      `env:${PIN_VAR}`,
      "-out",
      sig,
      data,
    ]),
    env: { OPENSSL_CONF: conf },
    pin: { secret: o.pin, via: "env", name: PIN_VAR },
  });
  return readFile(sig);
}

export const enginePath = (): string => LIBP11_ENGINE;

const confPath = (job: SignJob) => path.join(job.workDir, "openssl-engine.cnf");
const mode = (job: SignJob) => (job.options["mode"] === "cms" ? "cms" : "dgst");

function args(job: SignJob): string[] {
  const common = ["-engine", "pkcs11", "-keyform", "engine"];
  if (mode(job) === "cms") {
    return [
      "cms",
      "-sign",
      "-binary",
      ...common,
      "-inkey",
      job.keyUri,
      "-passin",
      `env:${PIN_VAR}`,
      "-signer",
      safePath(job.certFile),
      ...job.chainFiles.flatMap((f) => ["-certfile", safePath(f)]),
      "-md",
      job.hash,
      "-outform",
      "DER",
      "-in",
      safePath(job.input),
      "-out",
      safePath(job.output),
    ];
  }
  return [
    "dgst",
    `-${job.hash}`,
    ...common,
    "-sign",
    job.keyUri,
    "-passin",
    `env:${PIN_VAR}`,
    "-out",
    safePath(job.output),
    safePath(job.input),
  ];
}

async function sign(job: SignJob) {
  const file = findTool("openssl", job.toolPath);
  const v = await opensslVersion(job.toolPath);
  if (job.timestamps.length > 0) {
    throw new CodesignError("USAGE", "--tool openssl does not timestamp", {
      hint: "use --tool cms (RFC 3161 with fail-over), or `codesign timestamp` on the openssl CMS output",
    });
  }
  await writeFile(confPath(job), opensslEngineConfig({ module: job.modulePath }), { mode: 0o600 });
  await runTool({
    tool: "openssl",
    file,
    args: args(job),
    env: { OPENSSL_CONF: confPath(job) },
    pin: { secret: job.pin, via: "env", name: PIN_VAR },
  });
  return { tool: "openssl" as const, version: v };
}

export const adapter = { name: "openssl", version: opensslVersion, args, sign } satisfies SigningAdapter;

/** Whether pkcs11-provider loads (`openssl list -providers -provider pkcs11`); not packaged in Debian 12. */
export async function providerAvailable(toolPath?: string): Promise<boolean> {
  const out = await runToolRaw({
    tool: "openssl",
    file: findTool("openssl", toolPath),
    args: ["list", "-providers", "-provider", "pkcs11"],
  });
  return out.exitCode === 0 && /pkcs11/i.test(out.stdout);
}

/** Whether a program is on PATH, and what it says its version is. */
export async function probe(name: string, args: string[]): Promise<string | undefined> {
  let file: string;
  try {
    file = findTool(name);
  } catch {
    return undefined;
  }
  const out = await runToolRaw({ tool: name, file, args }).catch(() => undefined);
  return out ? (`${out.stdout}\n${out.stderr}`.trim().split("\n")[0] ?? "") : undefined;
}
