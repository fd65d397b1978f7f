#!/usr/bin/env bash
# Generate (or renew) the webhook's CA and serving certificate, the TLS Secret manifest and the caBundle
# patch, by default into manifests/base/generated/ (git-ignored), which manifests/overlays/script picks up
# (the script certificate mode; the default install manages its certificates in the cluster instead).
#
#   certs/generate.sh                       # create, or keep what is still valid
#   certs/generate.sh --force               # new CA and new serving certificate
#   certs/generate.sh --out DIR --service NAME --namespace NS --days N --ca-days N --renew-within-days N
#
# Same code as `pulltag certs` (pulltag/certs.py documents the files written).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

out_given=false
for arg in "$@"; do
    case "$arg" in
        --out|--out=*) out_given=true ;;
    esac
done
extra=()
if [[ "$out_given" == false ]]; then
    extra=(--out "$root/manifests/base/generated")
fi

if [[ -x "$root/.venv/bin/python" ]]; then
    exec "$root/.venv/bin/python" -m pulltag certs "${extra[@]}" "$@"
fi
exec pulltag certs "${extra[@]}" "$@"
