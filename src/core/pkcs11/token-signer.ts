import { createHash } from "node:crypto";
import type { Mechanism, RsaPSS } from "pkcs11js";
import { digestInfo, ecdsaRawToDer } from "../pki/asn1.js";
import { CodesignError } from "../errors.js";
import type { KeyInfo, MechanismTable } from "./keys.js";
import type { LoginFuse } from "./login-fuse.js";
import { CKM_EDDSA, type Session } from "./module.js";
import type { Pkcs11Js } from "./native.js";
import type { Secret } from "./pin.js";
import {
  type HashName,
  type KeyDescription,
  type SignRequest,
  type Signer,
  schemeFitsKey,
} from "../signer.js";

const HASH_BYTES: Record<HashName, number> = { sha256: 32, sha384: 48, sha512: 64 };

export interface ContextLogin {
  /** The user PIN, kept in memory for the run: an always-authenticate key wants it per signature. */
  pin: Secret;
  /** Shared by every signer of the run, so one rejected PIN stops them all. */
  fuse: LoginFuse;
}

/**
 * Where TokenKeySigner's token operations run: a Session on this thread, or a signing thread's
 * session (worker-signer.ts), which receives the mechanism and data this class chose.
 */
export interface SigningSession {
  readonly module: { readonly lib: Pkcs11Js };
  signOnce(
    mechanism: Mechanism,
    key: Buffer,
    data: Buffer,
    authorize?: (s: Session) => void,
  ): Promise<Buffer>;
}

/** A private key on a token, behind the one-method Signer contract. */
export class TokenKeySigner implements Signer {
  readonly key: KeyDescription;
  private readonly session: SigningSession;
  private readonly handle: Buffer;
  private readonly offered: Set<string>;
  private readonly label: string;
  private readonly authorize: ((s: Session) => void) | undefined;
  private readonly fuse: LoginFuse | undefined;

  constructor(
    session: SigningSession,
    key: KeyInfo & { handle: Buffer },
    table: MechanismTable,
    context?: ContextLogin,
  ) {
    if (!key.spki) {
      throw new CodesignError(
        "KEY_NOT_FOUND",
        `the public key of "${key.label}" is not readable from the token`,
        {
          hint: "store the public key or a certificate with the same CKA_ID on the token",
        },
      );
    }
    this.key = {
      keyType: key.keyType,
      spki: key.spki,
      ...(key.bits === undefined ? {} : { bits: key.bits }),
      ...(key.curve === undefined ? {} : { curve: key.curve }),
    };
    this.session = session;
    this.handle = key.handle;
    this.label = key.label;
    this.offered = new Set([...table.values()].filter((m) => m.sign).map((m) => m.name));
    if (key.alwaysAuthenticate === true) {
      if (!context) {
        throw new CodesignError(
          "PIN_REQUIRED",
          `the key "${key.label}" needs a PIN for every signature (CKA_ALWAYS_AUTHENTICATE)`,
          { hint: "sign through withTokenKey, which keeps the PIN for the run" },
        );
      }
      const { pin, fuse } = context;
      this.fuse = fuse;
      this.authorize = (s) => {
        fuse.check();
        try {
          s.contextLogin(pin);
        } catch (e) {
          throw fuse.observe(e);
        }
      };
    }
  }

  private signOnce(mechanism: Mechanism, data: Buffer): Promise<Buffer> {
    return this.session.signOnce(mechanism, this.handle, data, this.authorize);
  }

  private has(name: string): boolean {
    return this.offered.has(name);
  }

  private mechanism(name: string, parameter?: Mechanism["parameter"]): Mechanism {
    const lib = this.session.module.lib;
    const value = name === "CKM_EDDSA" ? CKM_EDDSA : (lib[name as keyof typeof lib] as number);
    return parameter === undefined ? { mechanism: value } : { mechanism: value, parameter };
  }

  private pssParams(hash: HashName): RsaPSS {
    const lib = this.session.module.lib;
    const H = hash.toUpperCase();
    return {
      type: lib.CK_PARAMS_RSA_PSS,
      hashAlg: lib[`CKM_${H}` as keyof typeof lib] as number,
      mgf: lib[`CKG_MGF1_${H}` as keyof typeof lib] as number,
      saltLen: HASH_BYTES[hash],
    };
  }

  private unsupported(what: string): CodesignError {
    return new CodesignError("MECHANISM_UNSUPPORTED", `token key "${this.label}" cannot sign with ${what}`, {
      hint: `the token offers: ${[...this.offered].filter((n) => /RSA|ECDSA|EDDSA/.test(n)).join(", ") || "no signing mechanisms"}`,
    });
  }

  async sign(req: SignRequest): Promise<Uint8Array> {
    // Before C_SignInit too: after a rejected PIN not even an operation is started.
    this.fuse?.check();
    const { hash, scheme } = req;
    if (!schemeFitsKey(scheme, this.key.keyType)) {
      throw new CodesignError(
        "INVALID_INPUT",
        `--mechanism ${scheme} does not fit a ${this.key.keyType} key`,
        {
          hint:
            this.key.keyType === "rsa"
              ? "use rsa-pkcs1 or rsa-pss"
              : `use ${this.key.keyType === "ec" ? "ecdsa" : "eddsa"}`,
        },
      );
    }
    const H = hash.toUpperCase();
    const input = req.input;
    const message = "message" in input ? Buffer.from(input.message) : undefined;
    if (scheme === "eddsa") {
      if (!message) throw new CodesignError("INVALID_INPUT", "EdDSA signs the message itself, not a digest");
      if (!this.has("CKM_EDDSA")) throw this.unsupported("EdDSA");
      return this.signOnce(this.mechanism("CKM_EDDSA"), message);
    }
    // Small data goes to a hash-and-sign mechanism when the token has one; otherwise (and for
    // files, which are always hashed on the host) the host digest goes to the raw mechanism.
    const combined = {
      "rsa-pkcs1": `CKM_${H}_RSA_PKCS`,
      "rsa-pss": `CKM_${H}_RSA_PKCS_PSS`,
      ecdsa: `CKM_ECDSA_${H}`,
    }[scheme];
    let out: Buffer;
    if (message && this.has(combined)) {
      out = await this.signOnce(
        this.mechanism(combined, scheme === "rsa-pss" ? this.pssParams(hash) : undefined),
        message,
      );
    } else {
      const digest =
        "digest" in input ? Buffer.from(input.digest) : createHash(hash).update(input.message).digest();
      if (digest.length !== HASH_BYTES[hash]) {
        throw new CodesignError(
          "INTERNAL",
          `a ${hash} digest must be ${HASH_BYTES[hash]} bytes, got ${digest.length}`,
        );
      }
      if (scheme === "rsa-pkcs1") {
        if (!this.has("CKM_RSA_PKCS")) throw this.unsupported(`RSA PKCS#1 v1.5 over a host ${hash} digest`);
        out = await this.signOnce(this.mechanism("CKM_RSA_PKCS"), Buffer.from(digestInfo(hash, digest)));
      } else if (scheme === "rsa-pss") {
        if (!this.has("CKM_RSA_PKCS_PSS")) throw this.unsupported(`RSA-PSS over a host ${hash} digest`);
        out = await this.signOnce(this.mechanism("CKM_RSA_PKCS_PSS", this.pssParams(hash)), digest);
      } else {
        if (!this.has("CKM_ECDSA")) throw this.unsupported(`ECDSA over a host ${hash} digest`);
        out = await this.signOnce(this.mechanism("CKM_ECDSA"), digest);
      }
    }
    if (scheme === "ecdsa" && (req.format ?? "der") === "der") return ecdsaRawToDer(out);
    return new Uint8Array(out);
  }
}
