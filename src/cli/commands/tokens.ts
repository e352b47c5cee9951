import { tokenUri } from "../../core/pkcs11/keys.js";
import { chooseModule } from "../../core/pkcs11/module-path.js";
import { withModule } from "../../core/pkcs11/module.js";
import { flag, str } from "../common.js";
import { info, printJson, printLine, table } from "../output.js";

export async function run(args: Record<string, unknown>): Promise<void> {
  const choice = chooseModule({ flag: str(args, "module"), moduleArgs: str(args, "module-args") });
  const tokens = await withModule(choice, (m) =>
    m.tokens().map((t) => ({
      label: t.label,
      manufacturer: t.manufacturer,
      model: t.model,
      serial: t.serial,
      slotId: t.slotId,
      flags: t.flags,
      ...(t.maxSessions === undefined ? {} : { maxSessions: t.maxSessions }),
      uri: tokenUri(t),
    })),
  );
  if (flag(args, "json")) {
    printJson({ module: choice.path, tokens });
    return;
  }
  info(`module: ${choice.path} (${choice.source})`);
  if (tokens.length === 0) {
    info("no tokens present");
    return;
  }
  printLine(
    table([
      ["LABEL", "MANUFACTURER", "MODEL", "SERIAL", "SLOT", "URI"],
      ...tokens.map((t) =>
        t.flags.includes("token-initialized")
          ? [t.label, t.manufacturer, t.model, t.serial, t.slotId, t.uri]
          : ["(not initialised)", t.manufacturer, t.model, t.serial, t.slotId, "-"],
      ),
    ]),
  );
}
