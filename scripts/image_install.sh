#!/usr/bin/env bash
# Run by the Containerfile inside its build stages: installs the image's Python environment.
# Usage: scripts/image_install.sh wheels|deps|app
#   wheels  /wheels: the context's wheelhouse/ (INSTALL_FROM=wheelhouse: made on a connected host by
#           scripts/wheelhouse.sh), or filled here by that script from the network (INSTALL_FROM=index);
#           then checked against this image's Python, EXTRAS and TORCH_BUILD
#   deps    /opt/venv with exactly the versions of /wheels/requirements.txt, from /wheels alone
#   app     the project from /src into /opt/onprem-rag, a layer of its own: a code change rebuilds only
#           it. First checks that every dependency of onprem-rag[EXTRAS] is in /opt/venv already.
# Environment of wheels (the Containerfile's build arguments): INSTALL_FROM, EXTRAS, TORCH_SPEC,
# TORCH_INDEX_URL, TORCH_BUILD.
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore

venv=/opt/venv
app=/opt/onprem-rag
wheels=/wheels
src=/src
offline=(--no-index --find-links "$wheels")
fail() { echo "image_install.sh: $*" >&2; exit 1; }
pyversion() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'; }

wheels() {
  case "${INSTALL_FROM:?}" in
    index)
      # The base image may have no pip of its own: a throwaway venv brings one.
      python3 -m venv /tmp/pip
      PYTHON=/tmp/pip/bin/python "$src/scripts/wheelhouse.sh" "$wheels"
      rm -rf /tmp/pip "$wheels/.stamp"
      ;;
    wheelhouse)
      [ -f "$wheels/requirements.txt" ] \
        || fail "the build context's wheelhouse/ is empty: run scripts/wheelhouse.sh first, or build" \
          "connected with --build-arg INSTALL_FROM=index"
      ;;
    *) fail "INSTALL_FROM is index or wheelhouse, not '$INSTALL_FROM'" ;;
  esac
  local have want torch
  have=$(cat "$wheels/python-version")
  want=$(pyversion python3)
  # Resolved with Python $have: valid for that release and later ones of the same minor version.
  if [ "${have%.*}" != "${want%.*}" ] || [ "${have##*.}" -gt "${want##*.}" ]; then
    fail "the wheelhouse was resolved with Python $have, the base image has $want: rebuild it with" \
      "a Python ${want%.*} no newer than $want (PYTHON=... scripts/wheelhouse.sh)"
  fi
  have=$(cat "$wheels/extras")
  [ "$have" = "${EXTRAS:?}" ] || fail "the wheelhouse has extras '$have', the build asks for '$EXTRAS' (EXTRAS)"
  torch=$(grep -i '^torch==' "$wheels/requirements.txt" | cut -d= -f3)
  if [ -n "${TORCH_BUILD:-}" ] && [ "${torch#*+}" != "$TORCH_BUILD" ]; then
    fail "the wheelhouse has torch $torch, the build asks for a +$TORCH_BUILD build (TORCH_BUILD)"
  fi
}

deps() {
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "${offline[@]}" -r "$wheels/requirements.txt"
  # The project lives in $app (next stage); the venv finds it through this path file.
  local site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  echo "$app" > "$site/onprem-rag.pth"
}

app() {
  local extras
  extras=$(cat "$wheels/extras")  # checked against EXTRAS by wheels
  # Everything onprem-rag[EXTRAS] needs must be in the venv already: pip may only want the project itself.
  "$venv/bin/pip" install --quiet "${offline[@]}" --dry-run --report /tmp/report.json "${src}[$extras]"
  "$venv/bin/python" - /tmp/report.json <<'PY'
import json, sys

todo = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in json.load(open(sys.argv[1]))["install"]]
extra = [t for t in todo if not t.lower().startswith("onprem-rag==")]
if extra:
    sys.exit(f"image_install.sh: the venv lacks {', '.join(extra)}: rebuild the wheelhouse (scripts/wheelhouse.sh)")
PY
  "$venv/bin/pip" install --quiet "${offline[@]}" --no-deps --target "$app" "$src"
  rm -f /tmp/report.json
  "$venv/bin/pip" check
  "$app/bin/rag" --help >/dev/null
}

case "${1:-}" in
  wheels) wheels ;;
  deps) deps ;;
  app) app ;;
  *) echo "usage: $0 wheels|deps|app" >&2; exit 2 ;;
esac
