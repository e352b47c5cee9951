/** Where profile files are looked for; kept free of dependencies so start-up stays cheap. */
import { existsSync } from "node:fs";
import path from "node:path";

export const CONFIG_FILE_NAMES = ["codesign.config.json", ".codesign.yaml", ".codesign.yml"] as const;

/** The first config file from `dir` upwards, if any. */
export function findConfigFile(dir: string = process.cwd()): string | undefined {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    for (const name of CONFIG_FILE_NAMES) {
      const f = path.join(d, name);
      if (existsSync(f)) return f;
    }
    if (path.dirname(d) === d) return undefined;
  }
}
