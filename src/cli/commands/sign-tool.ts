import { CodesignError } from "../../core/errors.js";

export async function run(_args: Record<string, unknown>, _tool?: string): Promise<void> {
  throw new CodesignError("INTERNAL", "sign-tool is not built yet");
}
