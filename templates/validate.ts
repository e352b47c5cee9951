/**
 * Every value a template writes passes through here: a control character (newline, CR, NUL…)
 * could end a line and start a new key or section in the generated file, so it is refused.
 */
import { CodesignError } from "../src/core/errors.js";

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Returns `value` unchanged, or throws INVALID_INPUT (exit 2) naming the field. */
export function configValue(field: string, value: string): string {
  if (CONTROL.test(value)) {
    throw new CodesignError(
      "INVALID_INPUT",
      `the ${field} contains a control character (${JSON.stringify(value)}); it cannot go into a config file`,
      {
        hint: "a label or path with a newline or other control character would inject lines into the file; rename it",
      },
    );
  }
  return value;
}

/**
 * A value for openssl.cnf. OpenSSL's config syntax reads `#` as a comment, `$NAME` as a variable
 * and `\` and quotes as escapes, and trims surrounding spaces; such a value is written in double
 * quotes with `"` and `\` escaped, which OpenSSL reads back byte for byte (checked with the real
 * openssl: `asn1parse -genconf` and an engine login with such a PIN).
 */
export function opensslConfigValue(field: string, value: string): string {
  configValue(field, value);
  if (/^[A-Za-z0-9_./:@+,=%~-]+$/.test(value)) return value;
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}
