import { pemEncode } from "../../core/pki/asn1.js";
import { writeFileAtomic } from "../../core/util/files.js";
import type { HashName, SignatureScheme } from "../../core/signer.js";
import { withTokenKey } from "../../core/pkcs11/token-key.js";
import { storeCertificate } from "../../core/pkcs11/token-objects.js";
import { createSelfSignedCertificate } from "../../core/pki/x509.js";
import { flag, keyAccess, str } from "../common.js";
import { info, printJson } from "../output.js";

export async function selfsign(args: Record<string, unknown>): Promise<void> {
  const out = str(args, "out") as string;
  const subject = str(args, "subject") as string;
  const store = flag(args, "store");
  const uri = await withTokenKey(
    { ...keyAccess(args), readWrite: store },
    async ({ signer, key, session }) => {
      const scheme = str(args, "mechanism") as SignatureScheme | undefined;
      const der = await createSelfSignedCertificate(signer, {
        subject,
        days: Number(args["days"]),
        hash: str(args, "hash") as HashName,
        ...(scheme ? { scheme } : {}),
      });
      await writeFileAtomic(out, pemEncode("CERTIFICATE", der));
      if (store) storeCertificate(session, der, key.label, key.id);
      return key.uri;
    },
  );
  if (flag(args, "json")) printJson({ key: uri, subject, out, stored: store });
  else
    info(
      `wrote a self-signed code-signing certificate for ${uri} to ${out}${store ? " and stored it on the token" : ""}`,
    );
}
