import { CodesignError } from "../../core/errors.js";
import { listKeys, type KeyInfo } from "../../core/pkcs11/keys.js";
import { chooseModule } from "../../core/pkcs11/module-path.js";
import { resolvePin } from "../../core/pkcs11/pin.js";
import { withModule, withSession } from "../../core/pkcs11/module.js";
import { parseUri } from "../../core/pkcs11/uri.js";
import { flag, str } from "../common.js";
import { promptPin } from "../prompt.js";
import { info, noTokensHint, printable, printJson, printLine, table } from "../output.js";

/** Code-point order, the same on every machine (no locale). */
const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

interface KeyRow {
  token: string;
  uri: string;
  label: string;
  id: string;
  keyType: KeyInfo["keyType"];
  bits?: number;
  curve?: string;
  hasCertificate: boolean;
  /** CKA_ALWAYS_AUTHENTICATE: a PIN per signature (only known after a login). */
  alwaysAuthenticate: boolean;
  mechanisms: string[];
}

export async function run(args: Record<string, unknown>): Promise<void> {
  const tokenArg = str(args, "token");
  const uri = tokenArg === undefined ? undefined : parseUri(tokenArg);
  const choice = chooseModule({ flag: str(args, "module"), uri, moduleArgs: str(args, "module-args") });
  const pin = await resolvePin({ uri, pinFile: str(args, "pin-file"), prompt: () => promptPin() });
  const result = await withModule(choice, async (m) => {
    const tokens = m.matchingTokens(uri);
    if (tokens.length === 0) {
      throw new CodesignError(
        "TOKEN_NOT_FOUND",
        tokenArg ? `no token matches ${tokenArg}` : `no tokens present in ${choice.path}`,
        {
          hint: tokenArg ? "run `codesign tokens` to see what the module offers" : noTokensHint(),
        },
      );
    }
    // One PIN is never tried on several tokens: each failure counts towards a lock-out.
    const login = pin !== undefined && tokens.length === 1;
    const rows: KeyRow[] = [];
    for (const token of tokens) {
      const mechanisms = m.mechanisms(token);
      await withSession(m, token, (s) => {
        if (login) s.login(pin);
        try {
          for (const k of listKeys(s, mechanisms)) {
            rows.push({
              token: token.label,
              uri: k.uri,
              label: k.label,
              id: Buffer.from(k.id).toString("hex"),
              keyType: k.keyType,
              ...(k.bits === undefined ? {} : { bits: k.bits }),
              ...(k.curve === undefined ? {} : { curve: k.curve }),
              hasCertificate: k.certificate !== undefined,
              alwaysAuthenticate: k.alwaysAuthenticate === true,
              mechanisms: k.mechanisms,
            });
          }
        } finally {
          if (login) s.logout();
        }
      });
    }
    rows.sort((a, b) => compare(a.token, b.token) || compare(a.label, b.label) || compare(a.id, b.id));
    return { login, rows, several: tokens.length > 1 };
  });
  const note = result.login
    ? undefined
    : pin !== undefined && result.several
      ? "several tokens match, so codesign did not log in (one PIN is never tried on several tokens); select one with --token to see its private keys"
      : "no PIN given: listed the public keys; a login (--pin-file, CODESIGN_PIN) shows every private key";
  if (flag(args, "json")) {
    printJson({ module: choice.path, loggedIn: result.login, ...(note ? { note } : {}), keys: result.rows });
    return;
  }
  if (note) info(note);
  if (result.rows.length === 0) {
    info("no signing keys found");
    return;
  }
  for (const r of result.rows.filter((row) => row.alwaysAuthenticate)) {
    info(
      `${printable(r.label || r.id)}: always-authenticate key, the PIN is given again for every signature`,
    );
  }
  printLine(
    table([
      ["TOKEN", "LABEL", "ID", "TYPE", "CERT", "URI"],
      ...result.rows.map((r) => [
        r.token,
        r.label,
        r.id,
        r.keyType === "rsa" ? `rsa-${r.bits ?? "?"}` : `${r.keyType} ${r.curve ?? ""}`.trim(),
        r.hasCertificate ? "yes" : "no",
        r.uri,
      ]),
    ]),
  );
}
