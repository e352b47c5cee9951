#!/usr/bin/env bash
# Configs for tools people already run: an openssl.cnf for the PKCS#11 engine, used by a plain
# `openssl dgst` pipeline, and a SunPKCS11 config used by keytool. The PIN reaches openssl by
# environment (-passin env:PIN), never the command line.
# Usage: examples/openssl-configs.sh [DEV_TOKEN_DIR]   (default .codesign/dev-token)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.codesign/dev-token}"
codesign() { node bin/codesign.js "$@"; }

eval "$(codesign dev-token init --dir "$dir")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
key='pkcs11:token=codesign-dev;object=rsa-2048;type=private'

echo "1. codesign config openssl-engine --key 'pkcs11:token=codesign-dev' --out openssl.cnf"
codesign config openssl-engine --key 'pkcs11:token=codesign-dev' --out "$work/openssl.cnf"
echo "release" >"$work/release.txt"
echo "2. the existing pipeline: OPENSSL_CONF=openssl.cnf openssl dgst -sha256 -engine pkcs11 -keyform engine -sign '$key' -passin env:PIN"
PIN="$(cat "$CODESIGN_PIN_FILE")" OPENSSL_CONF="$work/openssl.cnf" openssl dgst -sha256 -engine pkcs11 -keyform engine \
  -sign "$key" -passin env:PIN -out "$work/release.txt.sig" "$work/release.txt"
codesign pubkey --key "$key" --out "$work/pub.pem"
echo "3. openssl dgst -sha256 -verify pub.pem -signature release.txt.sig release.txt"
openssl dgst -sha256 -verify "$work/pub.pem" -signature "$work/release.txt.sig" "$work/release.txt"

echo "4. codesign config sunpkcs11 --key 'pkcs11:token=codesign-dev' --out pkcs11.cfg; keytool -list through it"
codesign config sunpkcs11 --key 'pkcs11:token=codesign-dev' --out "$work/pkcs11.cfg"
PIN="$(cat "$CODESIGN_PIN_FILE")" keytool -list -keystore NONE -storetype PKCS11 -addprovider SunPKCS11 \
  -providerArg "$work/pkcs11.cfg" -storepass:env PIN | grep PrivateKeyEntry
