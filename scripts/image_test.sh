#!/usr/bin/env bash
# Build the image (scripts/image.sh), then run it the way the chart does and check it end to end
# (`make image-test`): uid 10001, read-only root filesystem, no capabilities, a tmpfs /tmp and a volume at
# the data dir; every other path is read-only (podman's own tmpfs on /run and /var/tmp are off).
#   1. rag ingest of examples/docs (mounted read-only), without a network: nothing is downloaded
#   2. rag serve with the image's own defaults (it must bind 0.0.0.0 in the container), published on
#      127.0.0.1 only: /healthz, /readyz, and a chat completion that cites its sources (the `sources`
#      extension and [n] markers in the answer)
#   3. rag eval run on a sample of examples/questions.jsonl (scipy statistics, matplotlib plots)
#   4. lists what the containers wrote outside the volume (/tmp)
# Containers, the volume and temporary files are removed afterwards, also on failure.
# Usage: scripts/image_test.sh
# Environment: as scripts/image.sh; SKIP_BUILD=1 tests an existing IMAGE:TAG; PORT (default: a free one).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/image_lib.sh
. scripts/image_lib.sh

if [ "${SKIP_BUILD:-}" = 1 ]; then
  ref="${IMAGE:-localhost/onprem-rag}:${TAG:-$(project_version)}"
else
  ref=$(scripts/image.sh)
fi
run_id="rag-image-test-$$"
volume="$run_id-data"
server="$run_id-serve"
work=$(mktemp -d)
port="${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
base="http://127.0.0.1:$port"

cleanup() {
  pod rm --force --time 5 "$server" >/dev/null 2>&1 || true
  pod volume rm --force "$volume" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "image_test.sh: FAILED: $*" >&2
  if pod container exists "$server"; then
    echo "--- last lines of the service log ---" >&2
    pod logs --tail 40 "$server" >&2 || true
  fi
  exit 1
}
step() { echo "== $*" >&2; }

mapfile -t limits < <(ulimit_args)
# The chart's pod: runAsUser 10001, readOnlyRootFilesystem, drop ALL capabilities, no privilege
# escalation, an emptyDir at /tmp, a volume at config.data_dir.
confined=(--user 10001:10001 --read-only --read-only-tmpfs=false --tmpfs "/tmp:rw,nosuid,nodev,mode=1777"
  --cap-drop ALL --security-opt no-new-privileges --volume "$volume:/var/lib/rag" "${limits[@]}"
  --env COLUMNS=120)  # rich's tables in the captured output
pod volume create "$volume" >/dev/null

step "ingest examples/docs (no network)"
pod run --rm --network none "${confined[@]}" --volume "$PWD/examples/docs:/docs:ro" \
  "$ref" ingest /docs --report /var/lib/rag/ingest.json 2>&1 | tail -n 5 >&2 || fail "rag ingest"
python3 - "$(pod volume inspect --format '{{.Mountpoint}}' "$volume")/ingest.json" <<'PY' || fail "ingest summary"
import json, sys

s = json.load(open(sys.argv[1]))
print(f"   ingest summary: {json.dumps(s)[:300]}", file=sys.stderr)
assert not s.get("failed"), f"documents failed: {s.get('failed')}"
PY

step "serve (image defaults; published on 127.0.0.1:$port)"
pod run --detach --name "$server" "${confined[@]}" --publish "127.0.0.1:$port:8000" "$ref" >/dev/null \
  || fail "rag serve did not start"
for _ in $(seq 1 180); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  [ "$(pod inspect --format '{{.State.Running}}' "$server")" = true ] || fail "the service exited"
  sleep 1
done
curl -fsS "$base/healthz" >/dev/null || fail "/healthz did not answer within 180 s"
echo "   /healthz: $(curl -fsS "$base/healthz")" >&2
echo "   /readyz:  $(curl -fsS "$base/readyz" || fail "/readyz is not ready")" >&2

question="What is the maximum run time of a job in the batch queue?"
curl -fsS "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"rag\", \"messages\": [{\"role\": \"user\", \"content\": \"$question\"}]}" \
  > "$work/answer.json" || fail "POST /v1/chat/completions"
python3 - "$work/answer.json" <<'PY' || fail "the answer cites no source"
import json, re, sys

r = json.load(open(sys.argv[1]))
content = r["choices"][0]["message"]["content"]
sources = r.get("sources") or []
markers = sorted({int(n) for n in re.findall(r"\[(\d+)\]", content)})
print(f"   answer: {content[:200]!r}", file=sys.stderr)
print(f"   markers {markers}; sources: {[(s['n'], s['source']) for s in sources]}", file=sys.stderr)
assert sources, "no sources in the response"
assert markers, "no [n] marker in the answer"
assert set(markers) <= {s["n"] for s in sources}, "a marker names no listed source"
assert any(s["source"].endswith("gpu-cluster-policy.md") for s in sources), "the GPU policy is not cited"
PY

step "what the service wrote outside its volume"
pod exec "$server" sh -c 'id -u; touch /opt/probe 2>/dev/null && echo "root filesystem WRITABLE" || echo "root filesystem read-only"; find /tmp -mindepth 1 -maxdepth 3 | head -n 20' \
  > "$work/inside.txt" || fail "podman exec"
sed 's/^/   /' "$work/inside.txt" >&2
[ "$(head -n 1 "$work/inside.txt")" = 10001 ] || fail "the service does not run as uid 10001"
grep -qx "root filesystem read-only" "$work/inside.txt" || fail "the root filesystem is writable"
pod rm --force --time 10 "$server" >/dev/null

step "eval run on a sample of examples/questions.jsonl (no network)"
python3 - examples/questions.jsonl "$work/cases.jsonl" <<'PY'
import json, sys

with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        q = json.loads(line)
        case = {"id": q["id"], "question": q["question"], "answers": [q["answer"]], "lang": q["lang"]}
        out.write(json.dumps(case, ensure_ascii=False) + "\n")
PY
chmod -R a+rX "$work"
pod run --rm --network none "${confined[@]}" --volume "$work:/cases:ro" "$ref" \
  eval run --dataset /cases/cases.jsonl -t extractive:// --limit 6 --out /var/lib/rag/runs/image-test \
  2>&1 | tail -n 8 >&2 || fail "rag eval run"
runs="$(pod volume inspect --format '{{.Mountpoint}}' "$volume")/runs/image-test"
for f in summary.json report.md report.html; do
  [ -s "$runs/$f" ] || fail "eval wrote no $f"
done

echo "image_test.sh: OK: $ref ingests, serves (healthz, readyz, cited answer) and evaluates read-only as uid 10001" >&2
