import path from "node:path";
import { serveToken } from "../../../adapters/p11-kit-server.js";
import { CodesignError } from "../../core/errors.js";
import { chooseModule } from "../../core/pkcs11/module-path.js";
import { keyUri, parseUri } from "../../core/pkcs11/uri.js";
import { flag, str } from "../common.js";
import { info, printJson, printLine } from "../output.js";

export async function serve(args: Record<string, unknown>): Promise<void> {
  if (process.env["CODESIGN_REMOTE"]) {
    throw new CodesignError("USAGE", "remote serve exports a local module; it cannot itself use --remote", {
      hint: "unset CODESIGN_REMOTE",
    });
  }
  const uri = parseUri(str(args, "token") ?? "");
  const p = uri.path;
  if (p.object !== undefined || p.id !== undefined || p.type !== undefined) {
    throw new CodesignError("USAGE", "--token must name a token, not a key (no object=, id= or type=)", {
      hint: "e.g. --token 'pkcs11:token=release' (see `codesign tokens`)",
    });
  }
  if (p.token === undefined && p.serial === undefined) {
    throw new CodesignError("USAGE", "--token must select one token by token= or serial=", {
      hint: "exporting every token of a module is never what you want; see `codesign tokens`",
    });
  }
  const module = chooseModule({ flag: str(args, "module"), uri }).path;
  const socket = path.resolve(str(args, "socket") ?? "");
  const tokenUri = keyUri({ token: p.token, manufacturer: p.manufacturer, model: p.model, serial: p.serial });
  await serveToken({
    module,
    tokenUri,
    socket,
    toolPath: str(args, "tool-path"),
    onReady: (address) => {
      if (flag(args, "json")) printJson({ address, module, token: tokenUri, socket });
      else {
        printLine(`P11_KIT_SERVER_ADDRESS=${address}`);
        info(`serving ${tokenUri} from ${module}; clients: codesign --remote '${address}' …  (Ctrl-C stops)`);
      }
    },
  });
}
