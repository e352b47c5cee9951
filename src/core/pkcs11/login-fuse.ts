/**
 * One fuse per run for the per-signature (context-specific) logins of an always-authenticate key.
 * Each failed PIN attempt counts towards the token's lock-out, and every parallel session would
 * try the same wrong PIN: so the first rejection ends signing for all of them, and nothing calls
 * C_Login again.
 */
import { CodesignError } from "../errors.js";

/** Failures that mean "this PIN will not work": retrying them only burns attempts. */
const FATAL = new Set(["PIN_INCORRECT", "PIN_LOCKED", "PIN_EXPIRED", "LOGIN_FAILED"]);

export class LoginFuse {
  #blown: CodesignError | undefined;

  get blown(): boolean {
    return this.#blown !== undefined;
  }

  /** Throws the error that blew the fuse, if it has. Call before every C_Login. */
  check(): void {
    const e = this.#blown;
    if (e) {
      throw new CodesignError(e.code, `not signing: an earlier per-signature login failed (${e.message})`, {
        hint: e.hint ?? "check the PIN; codesign does not retry a rejected PIN",
        cause: e,
      });
    }
  }

  /** Blows the fuse when `e` is a PIN failure; returns `e` for rethrowing either way. */
  observe(e: unknown): unknown {
    if (e instanceof CodesignError && FATAL.has(e.code)) this.#blown ??= e;
    return e;
  }
}
