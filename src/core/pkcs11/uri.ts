/**
 * RFC 7512 PKCS#11 URIs: parse, serialise, describe.
 *
 *   pkcs11:token=release;object=signer;type=private?pin-source=file:/run/pin&module-name=softhsm2
 *
 * Path attributes are separated by ";", query attributes by "&". Values are percent-encoded
 * UTF-8, except `id`, which is raw bytes. A path attribute the RFC does not name is a typo
 * (`tokn=` would silently match every token) unless it is a vendor attribute named `x-…`; vendor
 * attributes are kept in order and written back unchanged. Query attributes the RFC does not name
 * are vendor attributes too (`x-init-reserved`, module-specific ones).
 *
 * Error messages never quote a pin-value, not even one character of it.
 */
import { CodesignError } from "../errors.js";

export const OBJECT_TYPES = ["public", "private", "cert", "secret-key", "data"] as const;
export type ObjectType = (typeof OBJECT_TYPES)[number];

export interface UriPath {
  token?: string | undefined;
  manufacturer?: string | undefined;
  serial?: string | undefined;
  model?: string | undefined;
  "library-manufacturer"?: string | undefined;
  "library-description"?: string | undefined;
  /** "M" or "M.m", digits only. */
  "library-version"?: string | undefined;
  object?: string | undefined;
  type?: ObjectType | undefined;
  id?: Uint8Array | undefined;
  "slot-manufacturer"?: string | undefined;
  "slot-description"?: string | undefined;
  "slot-id"?: number | undefined;
}

export interface UriQuery {
  "pin-source"?: string | undefined;
  "pin-value"?: string | undefined;
  "module-name"?: string | undefined;
  "module-path"?: string | undefined;
}

export interface Pkcs11Uri {
  path: UriPath;
  query: UriQuery;
  /** Vendor path attributes, in the order they appeared. */
  vendorPath: Array<[string, string]>;
  /** Vendor query attributes, in the order they appeared. */
  vendorQuery: Array<[string, string]>;
}

const SCHEME = "pkcs11:";

/** RFC 7512 order of the path attributes; formatUri writes them in this order. */
const PATH_NAMES = [
  "token",
  "manufacturer",
  "serial",
  "model",
  "library-manufacturer",
  "library-description",
  "library-version",
  "object",
  "type",
  "id",
  "slot-manufacturer",
  "slot-description",
  "slot-id",
] as const;
const QUERY_NAMES = ["pin-source", "pin-value", "module-name", "module-path"] as const;
type PathName = (typeof PATH_NAMES)[number];
type QueryName = (typeof QUERY_NAMES)[number];

const ALPHA_DIGIT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UNRESERVED = `${ALPHA_DIGIT}-._~`;
const RES_AVAIL = ":[]@!$'()*+,=";
/** Characters allowed unencoded in a path value (pk11-pchar without pct-encoded). */
const PATH_CHARS = new Set(`${UNRESERVED}${RES_AVAIL}&`);
/** Characters allowed unencoded in a query value (pk11-qchar without pct-encoded). */
const QUERY_CHARS = new Set(`${UNRESERVED}${RES_AVAIL}/?|`);
const NAME_CHARS = new Set(`${ALPHA_DIGIT}-_`);

function invalid(message: string): CodesignError {
  return new CodesignError("INVALID_INPUT", `invalid PKCS#11 URI: ${message}`, {
    hint: "a key URI looks like pkcs11:token=NAME;object=LABEL;type=private (see `codesign keys` and docs/key-uris.md)",
  });
}

/** Edit distance, for did-you-mean on attribute names (short strings only). */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(
        (row[j] as number) + 1,
        (next[j - 1] as number) + 1,
        (row[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    row = next;
  }
  return row[b.length] as number;
}

/** An unknown path attribute: refused with the nearest RFC 7512 name, never its value. */
function unknownPathAttribute(name: string): CodesignError {
  const lower = name.toLowerCase();
  const [best] = [...PATH_NAMES, ...QUERY_NAMES]
    .map((known) => ({ known, d: distance(lower, known) }))
    .sort((a, b) => a.d - b.d);
  const near = best && best.d <= Math.max(2, Math.floor(best.known.length / 3)) ? best.known : undefined;
  const where = near !== undefined && isQueryName(near) ? ` (a query attribute: write it after "?")` : "";
  return new CodesignError(
    "INVALID_INPUT",
    `invalid PKCS#11 URI: unknown path attribute ${name}=${near ? `; did you mean ${near}=${where}?` : ""}`,
    {
      hint: `the path attributes are ${PATH_NAMES.join(", ")}; vendor attributes start with x-`,
    },
  );
}

function isPathName(n: string): n is PathName {
  return (PATH_NAMES as readonly string[]).includes(n);
}
function isQueryName(n: string): n is QueryName {
  return (QUERY_NAMES as readonly string[]).includes(n);
}

/** Percent-decodes one value to bytes, checking every raw character against `allowed`. */
function decodeBytes(raw: string, allowed: Set<string>, name: string): Uint8Array {
  const secret = name === "pin-value";
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c === "%") {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
        throw invalid(
          secret
            ? `bad percent-escape in pin-value`
            : `bad percent-escape "%${hex}" in ${name}= (write %25 for a literal %)`,
        );
      }
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (allowed.has(c)) {
      out.push(c.charCodeAt(0));
    } else {
      const code = c.codePointAt(0) ?? 0;
      const encoded = Array.from(Buffer.from(String.fromCodePoint(code), "utf8"))
        .map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`)
        .join("");
      throw invalid(
        secret
          ? "pin-value holds a character that must be percent-encoded"
          : `${JSON.stringify(String.fromCodePoint(code))} in ${name}= must be percent-encoded as ${encoded}`,
      );
    }
  }
  return Uint8Array.from(out);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeText(raw: string, allowed: Set<string>, name: string): string {
  const bytes = decodeBytes(raw, allowed, name);
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalid(`${name}= is not valid UTF-8 after percent-decoding`);
  }
}

function splitAttribute(attr: string, where: "path" | "query"): [string, string] {
  const eq = attr.indexOf("=");
  if (eq <= 0) {
    // Never echo the text: it could be a PIN that lost its name.
    throw invalid(
      eq === 0
        ? `an attribute in the ${where} has no name`
        : `the ${where} attribute "${attr.length > 40 || where === "query" ? "…" : attr}" has no "=value"`,
    );
  }
  const name = attr.slice(0, eq);
  for (const c of name) {
    if (!NAME_CHARS.has(c)) throw invalid(`attribute name "${name}" may only hold letters, digits, - and _`);
  }
  return [name, attr.slice(eq + 1)];
}

export function isPkcs11Uri(s: string): boolean {
  return s.slice(0, SCHEME.length).toLowerCase() === SCHEME;
}

export function parseUri(input: string): Pkcs11Uri {
  if (!isPkcs11Uri(input)) {
    const colon = input.indexOf(":");
    throw invalid(
      colon > 0 && colon < 20
        ? `scheme "${input.slice(0, colon)}:" is not "pkcs11:"`
        : `it must start with "pkcs11:"`,
    );
  }
  const rest = input.slice(SCHEME.length);
  const q = rest.indexOf("?");
  const pathPart = q < 0 ? rest : rest.slice(0, q);
  const queryPart = q < 0 ? undefined : rest.slice(q + 1);
  if (pathPart.includes("#") || (queryPart?.includes("#") ?? false)) {
    throw invalid('"#" is not allowed; percent-encode it as %23');
  }

  const uri: Pkcs11Uri = { path: {}, query: {}, vendorPath: [], vendorQuery: [] };
  const seen = new Set<string>();
  const once = (name: string, where: "path" | "query"): void => {
    const key = `${where}:${name}`;
    if (seen.has(key)) throw invalid(`attribute ${name}= appears more than once in the ${where}`);
    seen.add(key);
  };

  if (pathPart !== "") {
    for (const attr of pathPart.split(";")) {
      if (attr === "") throw invalid('empty attribute in the path (two ";" in a row, or a trailing ";")');
      const [name, raw] = splitAttribute(attr, "path");
      once(name, "path");
      if (isQueryName(name)) throw invalid(`${name} is a query attribute: write it after "?"`);
      if (!isPathName(name)) {
        if (!name.toLowerCase().startsWith("x-")) throw unknownPathAttribute(name);
        uri.vendorPath.push([name, decodeText(raw, PATH_CHARS, name)]);
        continue;
      }
      setPath(uri.path, name, raw);
    }
  }
  if (queryPart !== undefined && queryPart !== "") {
    for (const attr of queryPart.split("&")) {
      if (attr === "") throw invalid('empty attribute in the query (two "&" in a row, or a trailing "&")');
      const [name, raw] = splitAttribute(attr, "query");
      once(name, "query");
      if (isPathName(name)) throw invalid(`${name} is a path attribute: write it before "?"`);
      const value = decodeText(raw, QUERY_CHARS, name);
      if (isQueryName(name)) uri.query[name] = value;
      else uri.vendorQuery.push([name, value]);
    }
  }
  return uri;
}

function setPath(p: UriPath, name: PathName, raw: string): void {
  switch (name) {
    case "id":
      p.id = decodeBytes(raw, PATH_CHARS, name);
      return;
    case "type": {
      const v = decodeText(raw, PATH_CHARS, name);
      if (!(OBJECT_TYPES as readonly string[]).includes(v)) {
        throw invalid(`type=${v} is not one of ${OBJECT_TYPES.join(", ")}`);
      }
      p.type = v as ObjectType;
      return;
    }
    case "library-version": {
      const v = decodeText(raw, PATH_CHARS, name);
      if (!/^\d+(\.\d+)?$/.test(v)) throw invalid(`library-version=${v} must be MAJOR or MAJOR.MINOR digits`);
      p[name] = v;
      return;
    }
    case "slot-id": {
      const v = decodeText(raw, PATH_CHARS, name);
      const n = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(n))
        throw invalid(`slot-id=${v} must be a decimal number`);
      p[name] = n;
      return;
    }
    default:
      p[name] = decodeText(raw, PATH_CHARS, name);
  }
}

function encode(bytes: Uint8Array, allowed: Set<string>): string {
  let out = "";
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    out += b < 0x80 && allowed.has(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

const encodeText = (s: string, allowed: Set<string>): string => encode(Buffer.from(s, "utf8"), allowed);

/** The canonical text of a URI: RFC attribute order, vendor attributes after, id fully escaped. */
export function formatUri(uri: Pkcs11Uri): string {
  const path: string[] = [];
  for (const name of PATH_NAMES) {
    const v = uri.path[name];
    if (v === undefined) continue;
    if (v instanceof Uint8Array) {
      path.push(
        `${name}=${Array.from(v, (b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("")}`,
      );
    } else {
      path.push(`${name}=${encodeText(String(v), PATH_CHARS)}`);
    }
  }
  for (const [name, v] of uri.vendorPath) path.push(`${name}=${encodeText(v, PATH_CHARS)}`);
  const query: string[] = [];
  for (const name of QUERY_NAMES) {
    const v = uri.query[name];
    if (v !== undefined) query.push(`${name}=${encodeText(v, QUERY_CHARS)}`);
  }
  for (const [name, v] of uri.vendorQuery) query.push(`${name}=${encodeText(v, QUERY_CHARS)}`);
  return `${SCHEME}${path.join(";")}${query.length > 0 ? `?${query.join("&")}` : ""}`;
}

export interface KeyUriParts {
  token?: string | undefined;
  manufacturer?: string | undefined;
  model?: string | undefined;
  serial?: string | undefined;
  object?: string | undefined;
  id?: Uint8Array | undefined;
  type?: ObjectType | undefined;
}

/**
 * A ready-to-paste URI for a token or key, in the order people read it:
 * token;manufacturer;model;serial;object;id;type. Never carries a PIN.
 */
export function keyUri(parts: KeyUriParts): string {
  const order: Array<keyof KeyUriParts> = [
    "token",
    "manufacturer",
    "model",
    "serial",
    "object",
    "id",
    "type",
  ];
  const attrs: string[] = [];
  for (const name of order) {
    const v = parts[name];
    if (v === undefined) continue;
    attrs.push(`${name}=${v instanceof Uint8Array ? encode(v, new Set()) : encodeText(v, PATH_CHARS)}`);
  }
  return `${SCHEME}${attrs.join(";")}`;
}

/**
 * One flat object keyed by the RFC's attribute names, for `codesign uri parse`.
 * `id` is lowercase hex; pin-value is left out.
 */
export function describeUri(uri: Pkcs11Uri): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const name of PATH_NAMES) {
    const v = uri.path[name];
    if (v === undefined) continue;
    out[name] = v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v;
  }
  for (const [name, v] of uri.vendorPath) out[name] = v;
  for (const name of QUERY_NAMES) {
    const v = uri.query[name];
    if (v !== undefined && name !== "pin-value") out[name] = v;
  }
  for (const [name, v] of uri.vendorQuery) if (!(name in out)) out[name] = v;
  return out;
}

/**
 * A key URI that looks cut by the shell at its first ";" (`--key pkcs11:token=a;object=b`
 * unquoted runs `object=b` as a second command): one path attribute, and it names no object.
 */
export function looksCutAtSemicolon(input: string): boolean {
  if (!isPkcs11Uri(input) || input.includes(";") || input.includes("?")) return false;
  const path = input.slice(SCHEME.length);
  return path !== "" && !/^(object|id)=/.test(path);
}

export const QUOTE_URI_HINT =
  "if the URI had more attributes after a \";\", the shell cut it there: quote the whole URI, e.g. --key 'pkcs11:token=NAME;object=LABEL;type=private'";
