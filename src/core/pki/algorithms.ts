/**
 * pkijs structures for the algorithms and keys that CMS, X.509 and timestamps name: kept apart
 * from asn1.ts so that raw signing, which needs none of them, does not load pkijs.
 */
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import {
  CURVES,
  type CurveInfo,
  checkHash,
  curveFromEcParams,
  ECDSA_OIDS,
  HASH_BYTES,
  hashOid,
  invalid,
  OID_EC_PUBLIC_KEY,
  OID_ED25519,
  OID_ED448,
  OID_MGF1,
  OID_RSA_ENCRYPTION,
  OID_RSASSA_PSS,
  parseDer,
  RSA_PKCS1_OIDS,
} from "./asn1.js";
import { CodesignError } from "../errors.js";
import type { HashName, KeyType, SignatureScheme } from "../signer.js";
import { schemeFitsKey } from "../signer.js";

export function hashAlgorithm(hash: HashName): pkijs.AlgorithmIdentifier {
  return new pkijs.AlgorithmIdentifier({ algorithmId: hashOid(hash), algorithmParams: new asn1js.Null() });
}

/**
 * The AlgorithmIdentifier of a signature, encoded as OpenSSL writes and expects it.
 * `curve` tells Ed25519 from Ed448 for `eddsa` (default Ed25519); `hash` is ignored for EdDSA.
 */
export function signatureAlgorithm(
  keyType: KeyType,
  scheme: SignatureScheme,
  hash: HashName,
  curve?: string,
): pkijs.AlgorithmIdentifier {
  if (!schemeFitsKey(scheme, keyType)) {
    throw invalid(
      `the ${scheme} signature scheme does not fit a ${keyType} key`,
      keyType === "rsa" ? "use rsa-pkcs1 or rsa-pss" : `use ${keyType === "ec" ? "ecdsa" : "eddsa"}`,
    );
  }
  if (scheme === "eddsa") {
    if (curve !== undefined && curve !== "Ed25519" && curve !== "Ed448") {
      throw invalid(`unsupported EdDSA curve ${curve}`, "use an Ed25519 or Ed448 key");
    }
    return new pkijs.AlgorithmIdentifier({ algorithmId: curve === "Ed448" ? OID_ED448 : OID_ED25519 });
  }
  checkHash(hash);
  if (scheme === "rsa-pkcs1") {
    return new pkijs.AlgorithmIdentifier({
      algorithmId: RSA_PKCS1_OIDS[hash],
      algorithmParams: new asn1js.Null(),
    });
  }
  if (scheme === "rsa-pss") {
    const params = new pkijs.RSASSAPSSParams({
      hashAlgorithm: hashAlgorithm(hash),
      maskGenAlgorithm: new pkijs.AlgorithmIdentifier({
        algorithmId: OID_MGF1,
        algorithmParams: hashAlgorithm(hash).toSchema(),
      }),
      saltLength: HASH_BYTES[hash],
    });
    return new pkijs.AlgorithmIdentifier({ algorithmId: OID_RSASSA_PSS, algorithmParams: params.toSchema() });
  }
  return new pkijs.AlgorithmIdentifier({ algorithmId: ECDSA_OIDS[hash] });
}

export interface SpkiInfo {
  keyType: KeyType;
  /** EC and EdDSA keys. */
  curve?: CurveInfo;
  /** The subjectPublicKey BIT STRING contents (for key identifiers). */
  publicKey: Uint8Array;
}

/** What kind of key a DER SubjectPublicKeyInfo holds. */
export function spkiInfo(spkiDer: Uint8Array): SpkiInfo {
  let info: pkijs.PublicKeyInfo;
  try {
    info = new pkijs.PublicKeyInfo({ schema: parseDer(spkiDer, "the public key") });
  } catch (cause) {
    if (cause instanceof CodesignError) throw cause;
    throw new CodesignError("INVALID_INPUT", "the public key is not a SubjectPublicKeyInfo", { cause });
  }
  const publicKey = new Uint8Array(info.subjectPublicKey.valueBlock.valueHexView);
  const oid = info.algorithm.algorithmId;
  if (oid === OID_RSA_ENCRYPTION || oid === OID_RSASSA_PSS) return { keyType: "rsa", publicKey };
  if (oid === OID_ED25519 || oid === OID_ED448) {
    const curve = CURVES.find((c) => c.oid === oid) as CurveInfo;
    return { keyType: "eddsa", curve: { ...curve }, publicKey };
  }
  if (oid === OID_EC_PUBLIC_KEY) {
    const params: unknown = info.algorithm.algorithmParams;
    if (!(params instanceof asn1js.ObjectIdentifier)) {
      throw invalid("the EC public key does not name its curve");
    }
    return {
      keyType: "ec",
      curve: curveFromEcParams(new Uint8Array(params.toBER())),
      publicKey,
    };
  }
  throw invalid(`unsupported public key algorithm ${oid}`);
}
