import { CodesignError } from "../../core/errors.js";

/**
 * In-place signing replaces an input only with a signed copy that verifies (with the signer's
 * certificate and the chain as trust anchors): `check` runs the ecosystem's own verifier.
 */
export async function verifyBeforeReplacing(input: string, check: () => Promise<unknown>): Promise<void> {
  try {
    await check();
  } catch (cause) {
    throw new CodesignError(
      "VERIFY_FAILED",
      `the signed copy of ${input} did not verify, so the input was left untouched`,
      { hint: "include the issuing CA in the chain, or write the signed copy elsewhere", cause },
    );
  }
}
