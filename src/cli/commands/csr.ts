import { pemEncode } from "../../core/pki/asn1.js";
import { writeFileAtomic } from "../../core/util/files.js";
import type { HashName, SignatureScheme } from "../../core/signer.js";
import { withTokenKey } from "../../core/pkcs11/token-key.js";
import { createCsr } from "../../core/pki/x509.js";
import { flag, keyAccess, str } from "../common.js";
import { info, printJson } from "../output.js";

export async function run(args: Record<string, unknown>): Promise<void> {
  const out = str(args, "out") as string;
  const subject = str(args, "subject") as string;
  const uri = await withTokenKey(keyAccess(args), async ({ signer, key }) => {
    const scheme = str(args, "mechanism") as SignatureScheme | undefined;
    const der = await createCsr(signer, {
      subject,
      hash: str(args, "hash") as HashName,
      ...(scheme ? { scheme } : {}),
    });
    await writeFileAtomic(out, pemEncode("CERTIFICATE REQUEST", der));
    return key.uri;
  });
  if (flag(args, "json")) printJson({ key: uri, subject, out });
  else info(`wrote a certificate request for ${uri} to ${out}`);
}
