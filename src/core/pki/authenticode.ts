/**
 * Authenticode (Microsoft's PKCS#7 profile for PE, MSI, CAB, CAT, APPX and scripts), pure bytes.
 * The file-specific part — the SpcIndirectDataContent holding the file's digest — comes from
 * `osslsigncode extract-data`; this module reads it and makes the Authenticode signed attributes.
 * The rest is ordinary CMS (./cms.ts): the token signs the signed attributes, whose
 * messageDigest covers the content octets of the SpcIndirectDataContent.
 */
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { CodesignError } from "../errors.js";
import { OID } from "./cms.js";

export const AUTHENTICODE_OID = {
  /** SPC_INDIRECT_DATA_OBJID: the content type of PE, MSI, CAB, APPX and script signatures. */
  indirectData: "1.3.6.1.4.1.311.2.1.4",
  statementType: "1.3.6.1.4.1.311.2.1.11",
  individualCodeSigning: "1.3.6.1.4.1.311.2.1.21",
  opusInfo: "1.3.6.1.4.1.311.2.1.12",
  /** SPC_RFC3161_OBJID: the unsigned attribute holding an RFC 3161 timestamp token. */
  rfc3161Timestamp: "1.3.6.1.4.1.311.3.3.1",
} as const;

export interface ExtractedContent {
  /** The content type to sign (SpcIndirectDataContent, or a catalog's CTL). */
  contentType: string;
  /** The content itself, to embed as the SignedData's eContent. */
  content: asn1js.BaseBlock;
  /** What messageDigest covers: the content's octets without its tag and length. */
  digestedOctets: Uint8Array;
}

/** Reads the unsigned PKCS#7 `osslsigncode extract-data` writes (DER). */
export function readExtractedContent(der: Uint8Array, file: string): ExtractedContent {
  try {
    const info = pkijs.ContentInfo.fromBER(Uint8Array.from(der).buffer);
    if (info.contentType !== OID.signedData) throw new Error(`content type ${info.contentType}`);
    const signed = new pkijs.SignedData({ schema: info.content });
    const content = signed.encapContentInfo.eContent as asn1js.BaseBlock | undefined;
    if (!content || !(content instanceof asn1js.Constructed)) throw new Error("no structured content");
    return {
      contentType: signed.encapContentInfo.eContentType,
      content,
      digestedOctets: new Uint8Array(content.valueBlock.toBER()),
    };
  } catch (cause) {
    throw new CodesignError(
      "TOOL_FAILED",
      `osslsigncode extract-data gave no Authenticode content for ${file}`,
      { hint: "check that osslsigncode can sign this file type (osslsigncode 2.9 or newer)", cause },
    );
  }
}

const context = (tagNumber: number, value: asn1js.BaseBlock) =>
  new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber }, value: [value] });

/** An IMPLICIT context-tagged string: [n] IA5String for ASCII, [n] BMPString otherwise. */
function taggedString(tagNumber: number, bytes: Uint8Array): asn1js.Primitive {
  return new asn1js.Primitive({
    idBlock: { tagClass: 3, tagNumber },
    valueHex: Uint8Array.from(bytes).buffer,
  });
}

/** SpcString: ascii [1] IMPLICIT IA5String when it can be, else unicode [0] IMPLICIT BMPString. */
function spcString(text: string): asn1js.Primitive {
  if (/^[\x20-\x7e]*$/.test(text)) return taggedString(1, new TextEncoder().encode(text));
  return taggedString(0, Buffer.from(text, "utf16le").swap16());
}

/**
 * The Authenticode signed attributes besides contentType and messageDigest: the statement type
 * (individual code signing) and, when given, the program's description and URL (SpcSpOpusInfo).
 */
export function authenticodeAttributes(o: { description?: string | undefined; url?: string | undefined }) {
  const attributes = [
    new pkijs.Attribute({
      type: AUTHENTICODE_OID.statementType,
      values: [
        new asn1js.Sequence({
          value: [new asn1js.ObjectIdentifier({ value: AUTHENTICODE_OID.individualCodeSigning })],
        }),
      ],
    }),
  ];
  if (o.url !== undefined && !/^[\x20-\x7e]*$/.test(o.url)) {
    throw new CodesignError("INVALID_INPUT", `the program URL ${JSON.stringify(o.url)} is not plain ASCII`, {
      hint: "percent-encode it, as a URL is",
    });
  }
  if (o.description !== undefined || o.url !== undefined) {
    attributes.push(
      new pkijs.Attribute({
        type: AUTHENTICODE_OID.opusInfo,
        values: [
          new asn1js.Sequence({
            value: [
              ...(o.description !== undefined ? [context(0, spcString(o.description))] : []),
              ...(o.url !== undefined ? [context(1, taggedString(0, new TextEncoder().encode(o.url)))] : []),
            ],
          }),
        ],
      }),
    );
  }
  return attributes;
}
