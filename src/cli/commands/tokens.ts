import { tokenUri } from "../../core/pkcs11/keys.js";
import { chooseModule } from "../../core/pkcs11/module-path.js";
import { withModule } from "../../core/pkcs11/module.js";
import { flag, str } from "../common.js";
import { info, noTokensHint, printable, printJson, printLine, table } from "../output.js";

/** By label, then serial and slot; slots without an initialised token last. */
function sortTokens<T extends { label: string; serial: string; slotId: string; flags: string[] }>(
  tokens: T[],
): T[] {
  const initialised = (t: T) => (t.flags.includes("token-initialized") ? 0 : 1);
  return [...tokens].sort(
    (a, b) =>
      initialised(a) - initialised(b) ||
      compare(a.label, b.label) ||
      compare(a.serial, b.serial) ||
      compare(a.slotId, b.slotId),
  );
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export async function run(args: Record<string, unknown>): Promise<void> {
  const choice = chooseModule({ flag: str(args, "module"), moduleArgs: str(args, "module-args") });
  const tokens = await withModule(choice, (m) =>
    sortTokens(m.tokens()).map((t) => ({
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
  info(`module: ${printable(choice.path)} (${choice.source})`);
  if (tokens.length === 0) {
    info("no tokens present");
    info(`  hint: ${noTokensHint()}`);
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
  if (!tokens.some((t) => t.flags.includes("token-initialized"))) {
    info("no tokens present: only empty slots");
    info(`  hint: ${noTokensHint()}`);
  }
}
