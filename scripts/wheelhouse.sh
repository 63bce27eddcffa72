#!/usr/bin/env bash
# Collect every wheel the image needs into a folder, on a host that reaches a package index, so the
# image can be built with `pip install --no-index` where nothing can be downloaded (the air-gapped
# build; see charts/README.md "Building the image"). The Containerfile also runs this script inside
# its build stage for a connected build (--build-arg INSTALL_FROM=index).
# Usage: scripts/wheelhouse.sh [DIR]           (default: wheelhouse/)
#
# DIR then holds: the wheels (torch first, then the project's dependencies with EXTRAS, and the build
# backend), requirements.txt (the exact versions resolved from DIR alone, offline: the image installs
# these), python-version and extras (what the image build checks it is given: the resolution holds for
# that Python release and newer ones of its minor version).
# The project's own wheel is not kept: the image builds it from the source tree.
#
# Environment:
#   PYTHON           interpreter whose pip resolves (default python3): the image's Python minor version and
#                    platform (3.11, linux x86-64), and no newer a release than the image's (packages may
#                    require e.g. >=3.11.5); scripts/image.sh picks one to match the base image
#   EXTRAS           the project's extras (default all,eval: embedded stores, S3, eval statistics and plots)
#   TORCH_SPEC       default torch==2.13.0
#   TORCH_INDEX_URL  extra index for torch (default the CPU builds, https://download.pytorch.org/whl/cpu;
#                    e.g. .../whl/cu128 for CUDA; empty = only pip's own configured indexes)
#   TORCH_BUILD      the local version tag the torch wheel must carry (default cpu, e.g. cu128; empty =
#                    any). Guards against PyPI's plain torch, a multi-GB CUDA build, arriving unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${1:-wheelhouse}"
python="${PYTHON:-python3}"
extras="${EXTRAS:-all,eval}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
torch_index="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
torch_build="${TORCH_BUILD-cpu}"
pip=("$python" -m pip --disable-pip-version-check)

"${pip[@]}" --version >/dev/null 2>&1 || { echo "wheelhouse.sh: $python has no pip" >&2; exit 1; }
version=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
want=$( (cat pyproject.toml scripts/wheelhouse.sh; echo "$python $version $extras $torch_spec $torch_index $torch_build") | sha256sum | cut -c1-16)
stamp="$dir/.stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dir/requirements.txt" ]; then
  echo "wheelhouse.sh: $dir is up to date" >&2
  exit 0
fi
mkdir -p "$dir"
# Built aside and swapped in at the end: DIR never holds a half-made or stale set.
new="$dir/.partial"
work=$(mktemp -d)
trap 'rm -rf "$work" "$new"' EXIT
rm -rf "$new"
mkdir -p "$new"

# 1. torch alone, from its index: asking that index for everything else would send every lookup there.
echo "wheelhouse.sh: $torch_spec${torch_index:+ (index $torch_index)} ..." >&2
index_args=()
[ -n "$torch_index" ] && index_args=(--extra-index-url "$torch_index")
"${pip[@]}" download --quiet --no-deps --only-binary=:all: --dest "$work/torch" "${index_args[@]}" "$torch_spec"
torch_whl=$(find "$work/torch" -name 'torch-*.whl' -print -quit)
[ -n "$torch_whl" ] || { echo "wheelhouse.sh: no torch wheel for $torch_spec" >&2; exit 1; }
torch_version=$(basename "$torch_whl" | cut -d- -f2)
if [ -n "$torch_build" ] && [ "${torch_version#*+}" != "$torch_build" ]; then
  echo "wheelhouse.sh: got torch $torch_version, wanted a +$torch_build build: check TORCH_INDEX_URL" \
    "(or set TORCH_BUILD= to accept it)" >&2
  exit 1
fi
mv "$torch_whl" "$new/"
echo "torch==$torch_version" > "$work/constraints.txt"

# 2. The project's dependencies with its extras, and its build backend (the image builds the project
#    from source without an index). The torch wheel of step 1 is pinned, so no other torch is fetched.
build_requires=$("$python" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' pyproject.toml)
echo "wheelhouse.sh: onprem-rag[$extras] and its dependencies ..." >&2
mapfile -t build_reqs <<< "$build_requires"
"${pip[@]}" wheel --quiet --wheel-dir "$new" --find-links "$new" --constraint "$work/constraints.txt" \
  ".[$extras]" "${build_reqs[@]}"
find "$new" -maxdepth 1 -name 'onprem_rag-*.whl' -delete

# 3. Resolve again from the new wheels alone, with no index and none of this host's pip configuration: this proves
#    the folder is enough offline (the project's build backend included: pip builds the project to read
#    its metadata), and the resolution becomes the image's requirements.txt.
echo "wheelhouse.sh: checking that the wheels resolve offline ..." >&2
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
  "${pip[@]}" install --quiet --dry-run --ignore-installed --no-index --find-links "$new" \
  --report "$work/report.json" ".[$extras]"
"$python" - "$work/report.json" "$new/requirements.txt" "$extras" <<'PY'
import json, sys

report, out, extras = sys.argv[1:]
pins = sorted(
    f"{i['metadata']['name']}=={i['metadata']['version']}"
    for i in json.load(open(report))["install"]
    if i["metadata"]["name"].lower().replace("_", "-") != "onprem-rag"
)
with open(out, "w") as f:
    f.write(f"# Resolved offline by scripts/wheelhouse.sh for onprem-rag[{extras}]; installed by the image build.\n")
    f.write("\n".join(pins) + "\n")
PY
echo "$version" > "$new/python-version"
echo "$extras" > "$new/extras"
find "$dir" -maxdepth 1 -type f \( -name '*.whl' -o -name requirements.txt -o -name python-version -o -name extras \) -delete
mv "$new"/* "$dir/"
echo "$want" > "$stamp"
count=$(grep -vc '^#' "$dir/requirements.txt")
echo "wheelhouse.sh: $dir: $count packages, $(du -sh "$dir" | cut -f1), torch $torch_version," \
  "Python $(cat "$dir/python-version")" >&2
