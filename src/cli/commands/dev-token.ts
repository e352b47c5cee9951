import { initDevToken, removeDevToken } from "../../core/pkcs11/dev-token.js";
import { flag, str } from "../common.js";
import { info, printJson, printLine } from "../output.js";

/** A value for `eval`: bare when it is plainly safe, else single-quoted. */
const shellQuote = (v: string): string => (/^[\w./:=@%+-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`);

export async function init(args: Record<string, unknown>): Promise<void> {
  const dir = str(args, "dir");
  const t = await initDevToken(dir);
  if (flag(args, "json")) {
    printJson(t);
    return;
  }
  // stdout holds only what `eval` runs; everything for the reader goes to stderr, so it shows
  // whether or not the output is eval'd.
  info(
    t.created
      ? `created the SoftHSM2 dev token "${t.token}" in ${t.dir}`
      : `the dev token "${t.token}" in ${t.dir} is ready`,
  );
  info("keys (each with a self-signed code-signing certificate on the token):");
  for (const k of t.keys) info(`  ${k.label}: ${k.uri}   (certificate: ${k.certificate})`);
  const again = `codesign dev-token init${dir === undefined ? "" : ` --dir ${shellQuote(dir)}`}`;
  info(
    `point a shell at it with: eval "$(${again})" (sets SOFTHSM2_CONF, CODESIGN_PKCS11_MODULE and CODESIGN_PIN_FILE)`,
  );
  printLine(`export SOFTHSM2_CONF=${shellQuote(t.config)}`);
  printLine(`export CODESIGN_PKCS11_MODULE=${shellQuote(t.module)}`);
  printLine(`export CODESIGN_PIN_FILE=${shellQuote(t.pinFile)}`);
}

export async function remove(args: Record<string, unknown>): Promise<void> {
  const dir = str(args, "dir");
  const removed = await removeDevToken(dir);
  if (flag(args, "json")) printJson({ removed, dir });
  else info(removed ? `removed the dev token in ${dir}` : `no dev token in ${dir}`);
}
