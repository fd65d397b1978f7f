#!/usr/bin/env bash
# Writes to stdout the single-file install (`kubectl apply -f install.yaml`): the default manifests/ (webhook
# certificates managed in the cluster by the leading listener) with pulltag's image set to IMAGE (repository:tag, or repository@sha256:... to pin a digest).
# Nothing secret is in it: the webhook certificate is made in the cluster, the store password and the
# registry credentials from Secrets you create (README, "Install").
#   charts/install-yaml.sh registry.example.com/platform/pulltag@sha256:<64 hex> > dist/install.yaml
set -euo pipefail
image=${1:?usage: install-yaml.sh IMAGE}
kubectl_bin=${KUBECTL:-kubectl}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

if [[ "$image" == *@* ]]; then
  name=${image%@*}
  ref=${image#*@}
  if ! [[ "$ref" =~ ^sha256:[a-f0-9]{64}$ ]]; then
    echo "install-yaml: the digest of $image is not sha256:<64 hex digits>" >&2
    exit 2
  fi
  field="digest: \"$ref\""
else
  last=${image##*/}
  if [[ "$last" != *:* ]]; then
    echo "install-yaml: $image has neither a tag nor a digest (IMAGE=repository:tag or repository@sha256:...)" >&2
    exit 2
  fi
  name=${image%:*}
  field="newTag: \"${image##*:}\""
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/manifests" "$tmp/manifests"
rm -rf "$tmp/manifests/base/generated"
mkdir "$tmp/release"
cat > "$tmp/release/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../manifests
images:
  - name: ghcr.io/pulltag/pulltag
    newName: "$name"
    $field
YAML
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml")
cat <<HEADER
# pulltag $version, image $image: kubectl apply -f install.yaml
# Before the pods can start: the Secret pulltag-store-password (key: password) in
# the namespace pulltag-system; the listener reads registry credentials from the Secret
# pulltag-registry-credentials (see README, "Install"). Generated from manifests/ by \`make release\`.
HEADER
"$kubectl_bin" kustomize "$tmp/release"
