#!/usr/bin/env bash
# Remote signing: one machine holds the token and runs `codesign remote serve`; signers reach it
# through a p11-kit socket (on another machine: forwarded with `ssh -L`, see docs/remote.md).
# Here both sides run on this machine, against the SoftHSM2 dev token.
# Usage: examples/remote-signing.sh [DEV_TOKEN_DIR]   (default .codesign/dev-token)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.codesign/dev-token}"
codesign() { node bin/codesign.js "$@"; }

eval "$(codesign dev-token init --dir "$dir")"
work="$(mktemp -d)"
server=""
cleanup() {
  [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "1. token side: codesign remote serve --token 'pkcs11:token=codesign-dev' --socket $work/token.sock"
node bin/codesign.js remote serve --token 'pkcs11:token=codesign-dev' --socket "$work/token.sock" >"$work/serve.out" &
server=$!
address=""
for _ in $(seq 100); do
  address="$(sed -n 's/^P11_KIT_SERVER_ADDRESS=//p' "$work/serve.out")"
  [[ -n $address && -S $work/token.sock ]] && break
  sleep 0.1
done
[[ -n $address ]] || { echo "remote serve did not start" >&2; exit 1; }
echo "   serving at $address"

# The signer side needs no module and no SoftHSM2 config: only the address (and the PIN).
echo "2. signer side: codesign --remote '$address' sign --tool raw --key ... release.tar"
echo "release bits" >"$work/release.tar"
key='pkcs11:token=codesign-dev;object=ec-p256;type=private'
env -u SOFTHSM2_CONF -u CODESIGN_PKCS11_MODULE node bin/codesign.js --remote "$address" \
  sign --tool raw --key "$key" --pin-file "$CODESIGN_PIN_FILE" --in "$work/release.tar"
env -u SOFTHSM2_CONF -u CODESIGN_PKCS11_MODULE node bin/codesign.js --remote "$address" \
  pubkey --key "$key" --out "$work/signer.pub.pem"

echo "3. verify: openssl dgst -sha256 -verify signer.pub.pem -signature release.tar.sig release.tar"
openssl dgst -sha256 -verify "$work/signer.pub.pem" -signature "$work/release.tar.sig" "$work/release.tar"
