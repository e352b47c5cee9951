#!/usr/bin/env bash
# A detached CMS signature (.p7s) made with a key on the token, checked by `codesign verify` and
# by `openssl cms -verify`.
# Usage: examples/cms-detached.sh [DEV_TOKEN_DIR]   (default .codesign/dev-token)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.codesign/dev-token}"
codesign() { node bin/codesign.js "$@"; }

eval "$(codesign dev-token init --dir "$dir")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
key='pkcs11:token=codesign-dev;object=rsa-2048;type=private'
head -c 1048576 /dev/urandom >"$work/release.tar.gz"

echo "1. codesign sign --key '$key' release.tar.gz   (-> release.tar.gz.p7s)"
codesign sign --key "$key" "$work/release.tar.gz"
echo "2. codesign verify --in release.tar.gz --signature release.tar.gz.p7s --ca rsa-2048.pem"
codesign verify --in "$work/release.tar.gz" --signature "$work/release.tar.gz.p7s" --ca "$dir/rsa-2048.pem"
echo "3. openssl cms -verify -binary -inform DER -in release.tar.gz.p7s -content release.tar.gz -CAfile rsa-2048.pem"
openssl cms -verify -binary -inform DER -in "$work/release.tar.gz.p7s" -content "$work/release.tar.gz" \
  -CAfile "$dir/rsa-2048.pem" -purpose any -out /dev/null
