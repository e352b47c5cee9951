import { initDevToken, removeDevToken } from "../../core/pkcs11/dev-token.js";
import { flag, str } from "../common.js";
import { info, printJson, printLine } from "../output.js";

export async function init(args: Record<string, unknown>): Promise<void> {
  const t = await initDevToken(str(args, "dir"));
  if (flag(args, "json")) {
    printJson(t);
    return;
  }
  info(
    t.created
      ? `created the SoftHSM2 dev token "${t.token}" in ${t.dir}`
      : `the dev token "${t.token}" in ${t.dir} is ready`,
  );
  info("use it in this shell with:");
  printLine(`export SOFTHSM2_CONF=${t.config}`);
  printLine(`export CODESIGN_PKCS11_MODULE=${t.module}`);
  printLine(`export CODESIGN_PIN_FILE=${t.pinFile}`);
  info("keys (each with a self-signed code-signing certificate on the token):");
  for (const k of t.keys) printLine(`# ${k.label}: ${k.uri}   (certificate: ${k.certificate})`);
}

export async function remove(args: Record<string, unknown>): Promise<void> {
  const dir = str(args, "dir");
  const removed = await removeDevToken(dir);
  if (flag(args, "json")) printJson({ removed, dir });
  else info(removed ? `removed the dev token in ${dir}` : `no dev token in ${dir}`);
}
