#!/usr/bin/env bash
# A JAR signed with a key on the token (the JAR v1 scheme written by codesign, the token signing
# in-process), then checked by `jarsigner -verify -strict` against the signer's CA.
# Usage: examples/sign-jar.sh [DEV_TOKEN_DIR]   (default .codesign/dev-token)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.codesign/dev-token}"
codesign() { node bin/codesign.js "$@"; }

eval "$(codesign dev-token init --dir "$dir")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
key='pkcs11:token=codesign-dev;object=ec-p256;type=private'

mkdir "$work/classes"
echo "hello" >"$work/classes/hello.txt"
jar cf "$work/app.jar" -C "$work/classes" .

echo "1. codesign sign --key '$key' --in app.jar --out app.signed.jar"
codesign sign --key "$key" --in "$work/app.jar" --out "$work/app.signed.jar"

echo "2. jarsigner -verify -strict (the dev certificate as the trust anchor)"
keytool -importcert -noprompt -alias dev -file "$dir/ec-p256.pem" -keystore "$work/trust.p12" \
  -storetype PKCS12 -storepass changeit >/dev/null
jarsigner -verify -strict -keystore "$work/trust.p12" -storetype PKCS12 -storepass changeit "$work/app.signed.jar" |
  grep -E '^jar (verified|is unsigned)'

echo "3. codesign verify --in app.signed.jar --ca ec-p256.pem"
codesign verify --in "$work/app.signed.jar" --ca "$dir/ec-p256.pem"
