import { CodesignError } from "../core/errors.js";

export type Handler = (args: Record<string, unknown>) => Promise<void>;

/** A handler that imports `./commands/<file>.js` only when the command runs. */
export function lazy(file: string, name = "run"): Handler {
  return async (args) => {
    const mod = (await import(`./commands/${file}.js`)) as Record<string, Handler>;
    const fn = mod[name];
    if (!fn) throw new CodesignError("INTERNAL", `command module ${file} has no ${name}()`);
    await fn(args);
  };
}
