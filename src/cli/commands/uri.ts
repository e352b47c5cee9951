import { describeUri, parseUri } from "../../core/pkcs11/uri.js";
import { flag, str } from "../common.js";
import { info, printJson, printLine, table } from "../output.js";

export async function parse(args: Record<string, unknown>): Promise<void> {
  const uri = parseUri(str(args, "uri") ?? "");
  const attrs = describeUri(uri);
  if (uri.query["pin-value"] !== undefined) {
    info("note: this URI carries a pin-value, which is not shown; prefer pin-source=file:FILE or --pin-file");
  }
  if (flag(args, "json")) printJson(attrs);
  else printLine(table(Object.entries(attrs).map(([k, v]) => [`${k}:`, String(v)])));
}
