/**
 * `codesign doctor`: the whole chain checked one link at a time — addon, module, tokens, key,
 * login, a test signature, certificate, and the tools codesign drives — each failure with its fix.
 */
import {
  createPublicKey,
  randomBytes,
  verify as cryptoVerify,
  createHash,
  X509Certificate,
} from "node:crypto";
import { existsSync } from "node:fs";
import { CodesignError } from "../../core/errors.js";
import { chooseModule, type ModuleChoice } from "../../core/pkcs11/module-path.js";
import { loadPkcs11Js } from "../../core/pkcs11/native.js";
import { resolvePin, type Secret } from "../../core/pkcs11/pin.js";
import type { OpenKey } from "../../core/pkcs11/token-key.js";
import { withPrivateDir } from "../../core/util/temp.js";
import { defaultScheme } from "../../core/signer.js";
import { parseUri } from "../../core/pkcs11/uri.js";
import {
  affectedByEarly30Bug,
  enginePath,
  engineTestSignature,
  opensslPinProblem,
  opensslVersion,
  probe,
  providerAvailable,
} from "../../../adapters/openssl.js";
import { adapter as osslsigncode } from "../../../adapters/osslsigncode.js";
import { flag, keyAccess, str } from "../common.js";
import { printable, printJson, printLine, style } from "../output.js";

interface Check {
  name: string;
  ok: boolean;
  severity: "ok" | "warning" | "fail";
  detail: string;
  fix?: string;
}

const checks: Check[] = [];
let keyReport: { uri: string; alwaysAuthenticate: boolean } | undefined;
const ok = (name: string, detail: string) => checks.push({ name, ok: true, severity: "ok", detail });
const bad = (name: string, detail: string, fix: string, severity: "warning" | "fail" = "fail") =>
  checks.push({ name, ok: false, severity, detail, fix });
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
const hintOf = (e: unknown, fallback: string) => (e instanceof CodesignError && e.hint ? e.hint : fallback);

async function tokenChecks(args: Record<string, unknown>): Promise<void> {
  try {
    loadPkcs11Js();
    ok("pkcs11js", "the native addon loads");
  } catch (e) {
    return void bad("pkcs11js", message(e), hintOf(e, "run npm ci"));
  }
  const key = str(args, "key");
  const uri = parseUri(key ?? "pkcs11:");
  let choice: ModuleChoice;
  try {
    choice = chooseModule({ flag: str(args, "module"), uri, moduleArgs: str(args, "module-args") });
  } catch (e) {
    return void bad("module", message(e), hintOf(e, "give --module PATH"));
  }
  const { withModule } = await import("../../core/pkcs11/module.js");
  const { withToken, withTokenKey } = await import("../../core/pkcs11/token-key.js");
  try {
    const modulePath = choice.path;
    await withModule(choice, (m) => {
      const d = m.describe();
      ok(
        "module",
        `${modulePath} loads${choice.initArgs ? ` with an init string (from ${choice.initArgs.source})` : ""} (${d.manufacturer} ${d.description}, Cryptoki ${d.cryptokiVersion})`,
      );
      const tokens = m.tokens();
      if (tokens.length === 0)
        bad("tokens", "the module shows no token", "initialise one, or check the module's own configuration");
      else
        ok(
          "tokens",
          tokens
            .map(
              (t) =>
                `"${t.label}" (slot ${t.slotId}${t.maxSessions === undefined ? "" : `, at most ${t.maxSessions} sessions`})`,
            )
            .join(", "),
        );
    });
  } catch (e) {
    return void bad("module", message(e), hintOf(e, "check --module / CODESIGN_PKCS11_MODULE"));
  }
  if (!key) return;
  const access = keyAccess(args, key);
  const pin = await resolvePin({ uri, pinFile: access.pinFile }).catch((e: unknown) => {
    bad("PIN", message(e), hintOf(e, "check the PIN source"));
    return undefined;
  });
  if (!pin) {
    bad(
      "login",
      "no PIN source: the key, the test signature and the certificate were not checked",
      "give --pin-file FILE or CODESIGN_PIN",
      "warning",
    );
    await withToken(
      {
        ...access,
        module: str(args, "module"),
        login: "if-pin",
        env: { ...process.env, CODESIGN_PIN: "", CODESIGN_PIN_FILE: "" },
      },
      async (t) => ok("token", `${t.token.label} (serial ${t.token.serial})`),
    ).catch((e: unknown) => bad("token", message(e), hintOf(e, "run codesign tokens")));
    return;
  }
  try {
    await withTokenKey({ ...access, pin }, async (k) => {
      ok("login", "one C_Login succeeded");
      ok(
        "key",
        `${k.key.uri} (${k.key.keyType}${k.key.bits ? ` ${k.key.bits}` : ""}${k.key.curve ? ` ${k.key.curve}` : ""})`,
      );
      keyReport = { uri: k.key.uri, alwaysAuthenticate: k.key.alwaysAuthenticate === true };
      ok(
        "always-authenticate",
        k.key.alwaysAuthenticate === true
          ? "yes: the key wants the PIN for every signature; codesign logs in once per signature (the test signature below did)"
          : "no: one login covers every signature",
      );
      if (k.key.mechanisms.length > 0) ok("mechanisms", k.key.mechanisms.join(", "));
      else
        bad(
          "mechanisms",
          "the token offers no signing mechanism for this key",
          "check the token's mechanism list (pkcs11-tool -M)",
        );
      const scheme = defaultScheme(k.key.keyType);
      const message = randomBytes(32);
      const digest = new Uint8Array(createHash("sha256").update(message).digest());
      const sig = await k.signer.sign({
        hash: "sha256",
        scheme,
        input: scheme === "eddsa" ? { message } : { digest },
      });
      if (!k.key.spki)
        bad(
          "test signature",
          "made, but the public key is unreadable to check it",
          "store the public key or the certificate on the token",
          "warning",
        );
      else {
        const pub = createPublicKey({ key: Buffer.from(k.key.spki), format: "der", type: "spki" });
        const valid = cryptoVerify(scheme === "eddsa" ? null : "sha256", message, pub, sig);
        if (valid) ok("test signature", `${scheme} signature verifies with the key's public half`);
        else
          bad(
            "test signature",
            "the token's signature does not verify",
            "the key or the module is broken; try another mechanism with --mechanism",
          );
      }
      await engineCheck(k, pin);
      const certDer = k.key.certificate;
      if (!certDer) {
        bad(
          "certificate",
          "no certificate object with the key's CKA_ID",
          "give --cert FILE when signing, or store one: codesign cert selfsign --store",
          "warning",
        );
        return;
      }
      const cert = new X509Certificate(Buffer.from(certDer));
      const spki = cert.publicKey.export({ format: "der", type: "spki" });
      if (k.key.spki && !Buffer.from(k.key.spki).equals(spki))
        bad(
          "certificate",
          "its public key is not the token key's",
          "store the certificate issued for this key",
        );
      else ok("certificate", cert.subject.replace(/\n/g, ", "));
      if (new Date(cert.validTo) < new Date())
        bad("certificate validity", `expired ${cert.validTo}`, "renew the certificate");
      else ok("certificate validity", `until ${cert.validTo}`);
      if ((cert.keyUsage ?? []).includes("1.3.6.1.5.5.7.3.3")) ok("codeSigning EKU", "present");
      else
        bad(
          "codeSigning EKU",
          "missing",
          "Authenticode and JAR verifiers may refuse it: get a code-signing certificate",
          "warning",
        );
    });
  } catch (e) {
    bad("login or key", message(e), hintOf(e, "check the key URI and the PIN"));
  }
}

/**
 * The `--tool openssl` path for real: the key loaded through the libp11 engine with the generated
 * config, one signature made and checked against the token key's public half.
 */
async function engineCheck(k: OpenKey, pin: Secret): Promise<void> {
  const name = "openssl engine key";
  if (!existsSync(enginePath())) return;
  if (k.key.alwaysAuthenticate || k.key.keyType === "eddsa" || !k.key.spki) {
    return void ok(name, "not tried (this key signs in-process only)");
  }
  const problem = opensslPinProblem(pin.reveal());
  if (problem)
    return void bad(name, `--tool openssl is refused: ${problem}`, "sign with --tool raw or cms", "warning");
  try {
    const sig = await withPrivateDir(
      (dir) =>
        engineTestSignature({ modulePath: k.moduleChoice.path, keyUri: k.key.uri, pin, dir, hash: "sha256" }),
      "codesign-doctor-",
    );
    const data = Buffer.from("codesign doctor: a test signature through the libp11 engine\n");
    const pub = createPublicKey({ key: Buffer.from(k.key.spki), format: "der", type: "spki" });
    if (cryptoVerify("sha256", data, pub, sig))
      ok(name, "openssl loads the key through the engine and its signature verifies");
    else
      bad(
        name,
        "the engine's signature does not verify with the key's public half",
        "check the module and the key URI",
      );
  } catch (e) {
    bad(name, message(e), "--tool openssl will fail the same way; sign with --tool raw or cms", "warning");
  }
}

async function toolChecks(): Promise<void> {
  try {
    const v = await opensslVersion();
    if (affectedByEarly30Bug(v))
      bad(
        "openssl",
        `OpenSSL ${v}`,
        "OpenSSL 3.0.0–3.0.8 breaks network PKCS#11 modules: upgrade to 3.0.9+",
        "warning",
      );
    else ok("openssl", `OpenSSL ${v}`);
  } catch (e) {
    bad("openssl", message(e), "install openssl", "warning");
  }
  if (existsSync(enginePath())) ok("libp11 engine", enginePath());
  else bad("libp11 engine", "not installed", "apt-get install libengine-pkcs11-openssl", "warning");
  const provider = await providerAvailable().catch(() => false);
  if (provider) ok("pkcs11-provider", "loads");
  else
    bad(
      "pkcs11-provider",
      "not available (the engine is used)",
      "optional: install pkcs11-provider where packaged",
      "warning",
    );
  // Present but unable to do what sign needs (extract-data, attach-signature) is a failure;
  // absent only rules Authenticode out, as a missing jarsigner rules JARs out.
  const ossl = await probe("osslsigncode", ["--version"]);
  if (ossl === undefined)
    bad(
      "osslsigncode",
      "not installed: Authenticode signing is unavailable",
      "install osslsigncode 2.6 or newer (scripts/bootstrap does; on Debian 12 from bookworm-backports)",
      "warning",
    );
  else {
    try {
      ok(
        "osslsigncode",
        `osslsigncode ${await osslsigncode.version()}: extract-data and attach-signature available`,
      );
    } catch (e) {
      bad("osslsigncode", message(e), hintOf(e, "install osslsigncode 2.6 or newer"));
    }
  }
  const jar = await probe("jarsigner", ["-help"]);
  if (jar !== undefined) ok("jarsigner", "installed");
  else bad("jarsigner", "not installed", "install a JDK (openjdk-17-jdk-headless)", "warning");
  const p11 = await probe("p11-kit", ["--help"]);
  if (p11 !== undefined) ok("p11-kit", "installed");
  else bad("p11-kit", "not installed", "apt-get install p11-kit p11-kit-modules", "warning");
}

export async function run(args: Record<string, unknown>): Promise<void> {
  await tokenChecks(args);
  await toolChecks();
  const failed = checks.filter((c) => c.severity === "fail");
  const error =
    failed.length === 0
      ? undefined
      : new CodesignError(
          "TOOL_FAILED",
          `${failed.length} check${failed.length === 1 ? "" : "s"} failed: ${failed.map((c) => c.name).join(", ")}`,
          { hint: "each failed check above names its fix" },
        );
  if (flag(args, "json"))
    printJson({
      ok: error === undefined, // on failure main adds the error (one place for every command)
      checks,
      ...(keyReport ? { key: keyReport } : {}),
    });
  else {
    for (const c of checks) {
      const mark =
        c.severity === "ok"
          ? style.green("ok  ")
          : c.severity === "warning"
            ? style.yellow("warn", process.stdout)
            : style.red("FAIL", process.stdout);
      printLine(`${mark}  ${c.name}: ${printable(c.detail)}${c.fix ? `\n      fix: ${c.fix}` : ""}`);
    }
  }
  if (error) throw error;
}
