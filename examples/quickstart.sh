#!/usr/bin/env bash
# Quickstart: create the SoftHSM2 dev token, sign a file with each of its keys, and check each
# signature with openssl (an independent verifier). The PIN stays in a 0600 file throughout.
# Usage: examples/quickstart.sh [DEV_TOKEN_DIR]   (default .codesign/dev-token)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.codesign/dev-token}"
codesign() { node bin/codesign.js "$@"; }

echo "1. dev token: eval \"\$(codesign dev-token init --dir $dir)\""
eval "$(codesign dev-token init --dir "$dir")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "hello from codesign" >"$work/hello.txt"

for object in rsa-2048 ec-p256; do
  key="pkcs11:token=codesign-dev;object=$object;type=private"
  echo "2. sign:   codesign sign --tool raw --key '$key' --pin-file \$CODESIGN_PIN_FILE --in hello.txt --out hello.txt.$object.sig"
  codesign sign --tool raw --key "$key" --pin-file "$CODESIGN_PIN_FILE" --in "$work/hello.txt" --out "$work/hello.txt.$object.sig"
  codesign pubkey --key "$key" --out "$work/$object.pub.pem"
  echo "3. verify: openssl dgst -sha256 -verify $object.pub.pem -signature hello.txt.$object.sig hello.txt"
  openssl dgst -sha256 -verify "$work/$object.pub.pem" -signature "$work/hello.txt.$object.sig" "$work/hello.txt"
done
echo "done: the dev token is in $dir. To use it in your shell:"
echo "  eval \"\$(npx codesign dev-token init --dir $dir)\"   # sets SOFTHSM2_CONF, CODESIGN_PKCS11_MODULE, CODESIGN_PIN_FILE"
echo "  npx codesign keys --pin-file \"\$CODESIGN_PIN_FILE\""
