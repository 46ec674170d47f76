#!/bin/bash
# deploy/docker's images, built with buildah (deploy/docker/build-images) and run:
#   - schism-coordinator is built from source; it must hold no libtorch (no file, nothing in ldd),
#     resolve every library it links, run as its non-root user, and stay under 150 MB;
#   - a 2-trial study on a tiny random model: the coordinator runs in its image (buildah run,
#     chroot isolation, the host's network, so 127.0.0.1), submit and status go through the image's
#     client commands, and a trial worker evaluates the trials;
#   - with SCHISM_TEST_WORKER_IMAGES=1 it also builds schism-worker and schism-export-worker
#     (~4.5 GB each of the torch wheel's libraries: too much for CI), runs the worker in its image
#     and exports the best trial with the export worker's image; else the worker is build/'s.
#   container_images_test.sh SCHISM_BINARY SOURCE_DIR
# Exit 77 (skipped) without root, buildah or debootstrap, or where buildah cannot run a container.
set -euo pipefail
SCHISM=$1
SOURCE=$2
skip() { echo "skipped: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "buildah's chroot isolation needs root"
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || skip "$tool not installed (apt-get install buildah debootstrap)"
done
export BUILDAH_ISOLATION=chroot
TAG="test-$$"
T=$(mktemp -d /tmp/schism_containers.XXXXXX)
CONTAINERS=()
PIDS=()
teardown() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1
  for c in "${CONTAINERS[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  if [ -z "${KEEP_IMAGES:-}" ]; then
    for image in schism-coordinator schism-worker schism-export-worker; do
      buildah rmi "localhost/$image:$TAG" >/dev/null 2>&1 || true
    done
    # The worker images' build cache holds their ~4 GB layers twice: let it go.
    [ "${SCHISM_TEST_WORKER_IMAGES:-0}" != 1 ] || buildah rmi --prune >/dev/null 2>&1 || true
  fi
  rm -rf "$T"
}
trap teardown EXIT
fail() {
  echo "FAILED: $*"
  for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  [ -z "${HTTP:-}" ] || python3 -c "import urllib.request, sys; print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers={'Authorization': 'Bearer ' + open(sys.argv[2]).read().strip()}), timeout=2).read().decode())" \
    "http://127.0.0.1:$HTTP/metrics" "$T/token" 2>&1 | grep -E "^schism_(workers|leases|trials)" || true
  exit 1
}
start_container() {  # VAR IMAGE: a working container of IMAGE, its name in VAR
  local name
  name=$(buildah from --pull=never "$2")
  CONTAINERS+=("$name")
  printf -v "$1" '%s' "$name"
}

BASE_IMAGE=localhost/schism-base:bookworm
if ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  "$SOURCE/deploy/docker/make-base" "$BASE_IMAGE" || fail "make-base"
fi
start_container probe "$BASE_IMAGE"
buildah run "$probe" -- true 2>"$T/probe.log" || skip "buildah cannot run a container here: $(tail -1 "$T/probe.log")"

IMAGES=(coordinator)
if [ "${SCHISM_TEST_WORKER_IMAGES:-0}" = 1 ]; then
  IMAGES+=(worker export-worker)
else
  echo "note: schism-worker and schism-export-worker are not built (SCHISM_TEST_WORKER_IMAGES=1 builds them; ~4.5 GB each)"
fi
BUILD_DIR=$(dirname "$(dirname "$SCHISM")")
if [ -n "${SCHISM_TEST_IMAGE_TAG:-}" ]; then
  TAG=$SCHISM_TEST_IMAGE_TAG  # images built before, kept (developing this test)
  KEEP_IMAGES=1
  echo "note: using the images tagged $TAG, not building"
else
  "$SOURCE/deploy/docker/build-images" --base "$BASE_IMAGE" --tag "$TAG" --build "$BUILD_DIR" "${IMAGES[@]}" \
    || fail "build-images ${IMAGES[*]}"
fi

# The coordinator image: no libtorch, every library resolved, under 150 MB.
start_container coord "localhost/schism-coordinator:$TAG"
root=$(buildah mount "$coord")
torch_files=$(find "$root" \( -name 'libtorch*' -o -name 'libc10*' -o -name 'libcudart*' -o -name 'libnccl*' \) | head -3)
[ -z "$torch_files" ] || fail "the coordinator image holds torch/CUDA libraries: $torch_files"
chroot "$root" ldd /usr/local/bin/schism-coordinator >"$T/ldd.txt"
grep -q "not found" "$T/ldd.txt" && fail "unresolved libraries: $(grep 'not found' "$T/ldd.txt")"
# Library names only: a load address such as 0x7f71f05c1000 holds "c10" too.
linked=$(awk '{print $1}' "$T/ldd.txt" | grep -E '^lib(torch|c10|cud|nccl|arrow|python)' || true)
[ -z "$linked" ] || fail "the coordinator links $linked"
for tool in gcc g++ cc c++ cmake ninja make ld as; do
  [ -e "$root/usr/bin/$tool" ] && fail "build tool $tool in the coordinator image"
done
size=$(du -sx --block-size=1 "$root" | cut -f1)
buildah umount "$coord" >/dev/null
echo "schism-coordinator image: $((size / 1000000)) MB on disk, $(wc -l <"$T/ldd.txt") libraries linked, no libtorch"
[ "$size" -lt 150000000 ] || fail "the coordinator image is $((size / 1000000)) MB (goal: under 150 MB)"
[ "$(buildah run "$coord" -- id -u)" = 10001 ] || fail "the coordinator image does not run as uid 10001"
buildah inspect --type image --format '{{.Docker.Config.Healthcheck.Test}}' "localhost/schism-coordinator:$TAG" | grep -q healthz \
  || fail "no HEALTHCHECK on /healthz"
buildah run "$coord" -- schism-coordinator worker --coordinator x >"$T/worker-in-coordinator.txt" 2>&1 && fail "schism-coordinator ran worker"
grep -q "no model runtime" "$T/worker-in-coordinator.txt" || fail "schism-coordinator worker: $(cat "$T/worker-in-coordinator.txt")"

# Two free ports below the ephemeral range (gRPC, HTTP side port).
PORT=$(python3 "$SOURCE/tests/deploy/free_ports.py" 2) || fail "no two consecutive free ports"
HTTP=$((PORT + 1))
mkdir -p "$T/store" "$T/models" "$T/data" "$T/exports"
chown 10001:10001 "$T/store" "$T/exports"
python3 "$SOURCE/tests/oracles/model_fixtures.py" tiny llama-tied "$T/models/tiny" \
  "${SCHISM_TEST_MODEL:-$SOURCE/models/SmolLM2-135M-Instruct.Q4_1.gguf}" >/dev/null || fail "tiny model fixture"
DATA=${SCHISM_DATA:-$SOURCE/../shared/datasets}
for set in harmless_train harmful_train harmful_test harmless_test; do cp "$DATA/$set.txt" "$T/data/"; done
chmod -R a+rX "$T/models" "$T/data"
echo "token-$$-$RANDOM" >"$T/token" && chmod 644 "$T/token"

# The coordinator in its image; store, token and the study's files bind-mounted.
buildah run --user 10001 -v "$T/store:/var/lib/schism/store" -v "$T/token:/run/schism/token:ro" "$coord" -- \
  schism-coordinator coordinator --store /var/lib/schism/store --listen "127.0.0.1:$PORT" \
  --http "127.0.0.1:$HTTP" --token-file /run/schism/token >"$T/coordinator.log" 2>&1 &
PIDS+=($!)
ready() { python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "http://127.0.0.1:$HTTP/readyz" 2>/dev/null; }
for _ in $(seq 100); do ready && break; sleep 0.2; done
ready || fail "the coordinator container is not ready"

# Paths in the study are the worker's: /models and /data inside the worker image, else the host's.
if [ "${SCHISM_TEST_WORKER_IMAGES:-0}" = 1 ]; then MODELS=/models; STUDY_DATA=/data; else MODELS=$T/models; STUDY_DATA=$T/data; fi
cat >"$T/data/study.toml" <<TOML
model = "$MODELS/tiny/model.gguf"
n_trials = 2
n_startup_trials = 2
max_response_length = 8
[good_prompts]
path = "$STUDY_DATA/harmless_train.txt"
split = "[:8]"
[bad_prompts]
path = "$STUDY_DATA/harmful_train.txt"
split = "[:8]"
[scorer.KeywordRate.prompts]
path = "$STUDY_DATA/harmful_test.txt"
split = "[:8]"
[scorer.KLDivergence.prompts]
path = "$STUDY_DATA/harmless_test.txt"
split = "[:4]"
TOML
client() {  # schism-coordinator COMMAND ... through the coordinator image
  buildah run --user 10001 -v "$T/token:/run/schism/token:ro" -v "$T/data:/data:ro" "$coord" -- \
    schism-coordinator "$@" --coordinator "127.0.0.1:$PORT" --token-file /run/schism/token
}
STUDY=$(client submit /data/study.toml) || fail "submit through the coordinator image"
echo "submitted $STUDY through the coordinator image"

if [ "${SCHISM_TEST_WORKER_IMAGES:-0}" = 1 ]; then
  start_container work "localhost/schism-worker:$TAG"
  buildah run --user 10001 -v "$T/token:/run/schism/token:ro" -v "$T/models:/models:ro" -v "$T/data:/data:ro" \
    "$work" -- schism worker --coordinator "127.0.0.1:$PORT" --token-file /run/schism/token --threads 1 \
    >"$T/worker.log" 2>&1 &
else
  "$SCHISM" worker --coordinator "127.0.0.1:$PORT" --token-file "$T/token" --threads 1 >"$T/worker.log" 2>&1 &
fi
PIDS+=($!)
state=""
for _ in $(seq 600); do
  state=$(client status "$STUDY" 2>/dev/null || true)
  # The state column, not "0 failed" further along the line.
  case "$state" in "$STUDY  finished"*|"$STUDY  failed"*|"$STUDY  cancelled"*) break ;; esac
  sleep 0.5
done
echo "$state"
echo "$state" | grep -Eq "^$STUDY +finished +2/2 complete, 0 failed" || fail "study not finished with 2/2: $state"
[ "$(client trials "$STUDY" | grep -c 'Refusals:')" = 2 ] || fail "not 2 scored trials"

if [ "${SCHISM_TEST_WORKER_IMAGES:-0}" = 1 ]; then
  start_container exporter "localhost/schism-export-worker:$TAG"
  buildah run --user 10001 -v "$T/token:/run/schism/token:ro" -v "$T/models:/models:ro" -v "$T/exports:/exports" \
    "$exporter" -- schism export-worker --coordinator "127.0.0.1:$PORT" --token-file /run/schism/token \
    --output-root /exports --threads 1 >"$T/export-worker.log" 2>&1 &
  PIDS+=($!)
  client export "$STUDY" 0 --dest best --source-model /models/tiny/hf >"$T/export.txt" 2>&1 \
    || fail "export through the export worker's image: $(cat "$T/export.txt")"
  [ -s "$T/exports/best/model.safetensors" ] && [ -s "$T/exports/best/reproduce.json" ] \
    || fail "the export worker wrote no model: $(ls "$T/exports/best" 2>&1)"
  echo "exported trial 0 with the export worker's image: $(cat "$T/export.txt")"
fi
echo "PASSED: images ${IMAGES[*]} built; study $STUDY ran 2 trials with the coordinator in its image"
