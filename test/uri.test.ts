import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CodesignError } from "../src/core/errors.js";
import {
  describeUri,
  formatUri,
  keyUri,
  OBJECT_TYPES,
  parseUri,
  type Pkcs11Uri,
  type UriPath,
} from "../src/core/pkcs11/uri.js";

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

function invalid(input: string): CodesignError {
  try {
    parseUri(input);
  } catch (e) {
    expect(e).toBeInstanceOf(CodesignError);
    expect((e as CodesignError).code).toBe("INVALID_INPUT");
    return e as CodesignError;
  }
  throw new Error(`parseUri accepted ${input}`);
}

describe("RFC 7512 §3.3 examples", () => {
  it("the empty URI", () => {
    expect(parseUri("pkcs11:")).toEqual({ path: {}, query: {}, vendorPath: [], vendorQuery: [] });
  });

  it("object and type", () => {
    expect(parseUri("pkcs11:object=my-pubkey;type=public").path).toEqual({
      object: "my-pubkey",
      type: "public",
    });
  });

  it("pin-source in the query", () => {
    const u = parseUri("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
    expect(u.path).toEqual({ object: "my-key", type: "private" });
    expect(u.query).toEqual({ "pin-source": "file:/etc/token" });
  });

  it("token, manufacturer, model, binary id and an empty serial", () => {
    const u = parseUri(
      "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;" +
        "model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=" +
        "?pin-source=file:/etc/token_pin",
    );
    expect(u.path).toEqual({
      token: "The Software PKCS#11 Softtoken",
      manufacturer: "Snake Oil, Inc.",
      model: "1.0",
      object: "my-certificate",
      type: "cert",
      id: bytes(0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91),
      serial: "",
    });
    expect(u.query["pin-source"]).toBe("file:/etc/token_pin");
    expect(describeUri(u)["id"]).toBe("69953e5cf4bdec91");
  });

  it("module-name and module-path", () => {
    expect(parseUri("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11").query).toEqual({
      "module-name": "mypkcs11",
    });
    expect(
      parseUri("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1").query,
    ).toEqual({
      "module-path": "/mnt/libmypkcs11.so.1",
    });
  });

  it("pin-value is parsed but never described", () => {
    const u = parseUri(
      "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin",
    );
    expect(u.path).toEqual({ token: "Software PKCS#11 softtoken", manufacturer: "Snake Oil, Inc." });
    expect(u.query["pin-value"]).toBe("the-pin");
    expect(describeUri(u)).toEqual({ token: "Software PKCS#11 softtoken", manufacturer: "Snake Oil, Inc." });
    expect(JSON.stringify(describeUri(u))).not.toContain("the-pin");
  });

  it("slot description", () => {
    expect(parseUri("pkcs11:slot-description=Sun%20Metaslot").path).toEqual({
      "slot-description": "Sun Metaslot",
    });
  });

  it("library attributes", () => {
    expect(
      parseUri(
        "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;library-version=1.23",
      ).path,
    ).toEqual({
      "library-manufacturer": "Snake Oil, Inc.",
      "library-description": "Soft Token Library",
      "library-version": "1.23",
    });
  });

  it("mixed-case escapes in a binary id and a % in a token name", () => {
    const u = parseUri(
      "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;id=%01%02%03%Ba%dd%Ef%08%57%51%8A%89?pin-value=the-pin",
    );
    expect(u.path.token).toBe("My token% created by Joe");
    expect(u.path["library-version"]).toBe("3");
    expect(u.path.id).toEqual(bytes(0x01, 0x02, 0x03, 0xba, 0xdd, 0xef, 0x08, 0x57, 0x51, 0x8a, 0x89));
  });

  it("escaped ; and % inside a value", () => {
    expect(
      parseUri("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert").path
        .token,
    ).toBe("A name with a substring %;");
  });

  it("UTF-8 in a value", () => {
    expect(
      parseUri(
        "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert",
      ).path.token,
    ).toBe("Name with a small A with acute: á");
  });

  it("vendor attributes (x- in the path, as codesign requires) are kept in order", () => {
    // RFC 7512 §3.3's example with its path attribute renamed x-vendor-aaa: codesign refuses an
    // unknown path attribute without the x- prefix (a misspelt `tokn=` would otherwise match anything).
    const u = parseUri(
      "pkcs11:token=my-token;object=my-certificate;type=cert;x-vendor-aaa=value-a?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
    );
    expect(u.vendorPath).toEqual([["x-vendor-aaa", "value-a"]]);
    expect(u.vendorQuery).toEqual([["vendor-bbb", "value-b"]]);
    expect(describeUri(u)).toMatchObject({ "x-vendor-aaa": "value-a", "vendor-bbb": "value-b" });
    expect(formatUri(u)).toBe(
      "pkcs11:token=my-token;object=my-certificate;type=cert;x-vendor-aaa=value-a?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
    );
    expect(() => parseUri("pkcs11:token=my-token;vendor-aaa=value-a")).toThrow(/vendor-aaa/);
  });

  it("slot-id is a number and the scheme is case-insensitive", () => {
    expect(parseUri("PKCS11:slot-id=586401802").path["slot-id"]).toBe(586401802);
  });
});

describe("malformed URIs get clear errors", () => {
  it.each([
    ["https://example.com", /scheme "https:" is not "pkcs11:"/],
    ["token=x", /must start with "pkcs11:"/],
    ["pkcs11:token=a%2", /bad percent-escape "%2" in token=/],
    ["pkcs11:token=a%zz", /bad percent-escape "%zz"/],
    ["pkcs11:token=a;token=b", /token= appears more than once/],
    ["pkcs11:?module-name=a&module-name=b", /module-name= appears more than once/],
    ["pkcs11:type=secret", /type=secret is not one of public, private, cert, secret-key, data/],
    ["pkcs11:token=a b", /" " in token= must be percent-encoded as %20/],
    ["pkcs11:object=a/b", /"\/" in object= must be percent-encoded as %2F/],
    ["pkcs11:token=a;;object=b", /empty attribute in the path/],
    ["pkcs11:token", /has no "=value"/],
    ["pkcs11:=x", /has no name/],
    ["pkcs11:to.ken=x", /may only hold letters, digits/],
    ["pkcs11:library-version=1.2.3", /library-version=1.2.3 must be MAJOR or MAJOR.MINOR/],
    ["pkcs11:slot-id=-1", /slot-id=-1 must be a decimal number/],
    ["pkcs11:token=%C3%28", /token= is not valid UTF-8/],
    ["pkcs11:pin-value=1234", /pin-value is a query attribute/],
    ["pkcs11:?object=x", /object is a path attribute/],
    ["pkcs11:token=x#frag", /"#" is not allowed/],
  ])("%s", (input, message) => {
    const e = invalid(input);
    expect(e.message).toMatch(message);
    expect(e.hint).toMatch(/pkcs11:token=/);
  });

  it("never quotes a pin-value", () => {
    for (const input of [
      "pkcs11:object=k?pin-value=s3cr%2",
      "pkcs11:object=k?pin-value=s3cr et",
      "pkcs11:object=k?pin-value=s3cret&pin-value=s3cret",
      "pkcs11:object=k?s3cret",
    ]) {
      const e = invalid(input);
      expect(`${e.message} ${e.hint ?? ""}`).not.toContain("s3cr");
    }
  });
});

describe("formatUri and keyUri", () => {
  it("writes a key URI in reading order, id fully escaped, no PIN", () => {
    expect(
      keyUri({ token: "codesign-dev", serial: "abc", object: "rsa-2048", id: bytes(1), type: "private" }),
    ).toBe("pkcs11:token=codesign-dev;serial=abc;object=rsa-2048;id=%01;type=private");
    expect(keyUri({ token: "SoftHSM token", manufacturer: "SoftHSM project", model: "SoftHSM v2" })).toBe(
      "pkcs11:token=SoftHSM%20token;manufacturer=SoftHSM%20project;model=SoftHSM%20v2",
    );
    expect(keyUri({ object: "a;b%c/d", id: bytes(0x41) })).toBe("pkcs11:object=a%3Bb%25c%2Fd;id=%41");
  });

  it("query values keep / : and ? readable", () => {
    const u = parseUri("pkcs11:object=k?module-path=/usr/lib/softhsm/libsofthsm2.so");
    expect(formatUri(u)).toBe("pkcs11:object=k?module-path=/usr/lib/softhsm/libsofthsm2.so");
  });
});

describe("round trip (fast-check)", () => {
  const text = fc.option(fc.string({ unit: "grapheme", maxLength: 24 }), { nil: undefined });
  const name = fc
    .stringMatching(/^[a-z][a-z0-9_-]{0,11}$/)
    .filter(
      (n) =>
        ![
          "token",
          "manufacturer",
          "serial",
          "model",
          "object",
          "type",
          "id",
          "pin-source",
          "pin-value",
          "module-name",
          "module-path",
        ].includes(n) &&
        !n.startsWith("library-") &&
        !n.startsWith("slot-"),
    );
  const path: fc.Arbitrary<UriPath> = fc.record(
    {
      token: text,
      manufacturer: text,
      serial: text,
      model: text,
      "library-manufacturer": text,
      "library-description": text,
      "library-version": fc.option(fc.stringMatching(/^\d{1,3}(\.\d{1,3})?$/), { nil: undefined }),
      object: text,
      type: fc.option(fc.constantFrom(...OBJECT_TYPES), { nil: undefined }),
      id: fc.option(fc.uint8Array({ maxLength: 20 }), { nil: undefined }),
      "slot-manufacturer": text,
      "slot-description": text,
      "slot-id": fc.option(fc.nat(), { nil: undefined }),
    },
    { requiredKeys: [] },
  );
  const uri: fc.Arbitrary<Pkcs11Uri> = fc.record({
    path: path.map(
      (p) => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as UriPath,
    ),
    query: fc
      .record(
        {
          "pin-source": text,
          "pin-value": text,
          "module-name": text,
          "module-path": text,
        },
        { requiredKeys: [] },
      )
      .map((q) => Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined))),
    vendorPath: fc.uniqueArray(
      fc.tuple(
        name.map((n) => `x-${n}`),
        fc.string({ maxLength: 12 }),
      ),
      {
        selector: (t) => t[0],
        maxLength: 3,
      },
    ),
    vendorQuery: fc.uniqueArray(fc.tuple(name, fc.string({ maxLength: 12 })), {
      selector: (t) => t[0],
      maxLength: 3,
    }),
  });

  it("parseUri(formatUri(u)) equals u", () => {
    fc.assert(
      fc.property(uri, (u) => {
        expect(parseUri(formatUri(u))).toEqual(u);
      }),
      { numRuns: 3000 },
    );
  });

  it("formatUri is stable: formatting the parse of a formatted URI gives the same text", () => {
    fc.assert(
      fc.property(uri, (u) => {
        const s = formatUri(u);
        expect(formatUri(parseUri(s))).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });

  it("garbage never crashes the parser: it parses or throws INVALID_INPUT", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        try {
          parseUri(`pkcs11:${s}`);
        } catch (e) {
          expect(e).toBeInstanceOf(CodesignError);
          expect((e as CodesignError).code).toBe("INVALID_INPUT");
        }
      }),
      { numRuns: 2000 },
    );
  });
});
