#!/usr/bin/env bash
# Authenticode with a key on the token: a PowerShell script and a PE executable signed through
# osslsigncode, each checked by `osslsigncode verify`. The PE is a minimal one built here with
# binutils-mingw-w64 (installed by scripts/bootstrap).
# Usage: examples/sign-windows.sh [DEV_TOKEN_DIR]   (default .codesign/dev-token)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.codesign/dev-token}"
codesign() { node bin/codesign.js "$@"; }

eval "$(codesign dev-token init --dir "$dir")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
key='pkcs11:token=codesign-dev;object=rsa-2048;type=private'
ca="$dir/rsa-2048.pem" # the dev token's self-signed certificate, here its own CA

printf 'Write-Output "hello from codesign"\r\n' >"$work/install.ps1"
printf '.globl _start\n_start:\n  ret\n' >"$work/app.s"
x86_64-w64-mingw32-as "$work/app.s" -o "$work/app.o"
x86_64-w64-mingw32-ld --subsystem console -e _start "$work/app.o" -o "$work/app.exe"

echo "1. codesign sign --tool osslsigncode --key '$key' --in app.exe --out app.signed.exe"
codesign sign --tool osslsigncode --key "$key" --in "$work/app.exe" --out "$work/app.signed.exe"
echo "2. codesign sign --key '$key' install.ps1   (--tool auto picks osslsigncode)"
codesign sign --key "$key" "$work/install.ps1"

for f in app.signed.exe install.signed.ps1; do
  echo "3. osslsigncode verify -CAfile rsa-2048.pem -in $f"
  osslsigncode verify -CAfile "$ca" -in "$work/$f" | grep -E '^(Succeeded|Failed)'
done
