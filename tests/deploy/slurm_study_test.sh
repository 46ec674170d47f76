#!/bin/bash
# deploy/slurm/schism-study.sbatch on a real single-node Slurm: munged, slurmctld and slurmd from
# Debian's packages, started privately in a temporary folder (own munge socket and key, own
# ports), running a 4-trial study on a tiny random model with 2 worker tasks (each a 2-rank
# tensor-parallel worker), then the export step.
#   slurm_study_test.sh SCHISM_BINARY SOURCE_DIR
# Exit 77 (skipped) without root (slurmd needs it) or without the Slurm/munge packages.
set -euo pipefail
SCHISM=$1
SOURCE=$2
if [ "$(id -u)" != 0 ]; then echo "skipped: slurmd needs root"; exit 77; fi
for tool in munged slurmctld slurmd sbatch sinfo; do
  command -v "$tool" >/dev/null || { echo "skipped: $tool not installed (apt install slurm-wlm munge)"; exit 77; }
done

T=$(mktemp -d /tmp/schism_slurm.XXXXXX)
# Four consecutive free ports (slurmctld, slurmd, coordinator gRPC, coordinator HTTP) below the
# kernel's ephemeral range, so no outgoing connection of another test can be holding one.
BASE=$(python3 "$SOURCE/tests/deploy/free_ports.py" 4 || true)
[ -n "$BASE" ] || { echo "no four consecutive free ports found"; exit 1; }
export SLURM_CONF=$T/slurm.conf
teardown() {
  scontrol shutdown >/dev/null 2>&1 || true
  [ -f "$T/munged.pid" ] && kill "$(cat "$T/munged.pid")" 2>/dev/null || true
  sleep 1
  rm -rf "$T"
}
trap teardown EXIT

mkdir -p "$T/munge" "$T/state" "$T/spool" && chmod 700 "$T/munge"
head -c 1024 /dev/urandom > "$T/munge/munge.key" && chmod 600 "$T/munge/munge.key"
munged --force --socket="$T/munge/sock" --key-file="$T/munge/munge.key" --pid-file="$T/munged.pid" \
  --log-file="$T/munged.log" --seed-file="$T/munge/seed"
cat > "$SLURM_CONF" <<CONF
ClusterName=schismtest
SlurmctldHost=localhost
SlurmctldPort=$BASE
SlurmdPort=$((BASE + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
NodeName=schismnode NodeHostname=$(hostname) CPUs=$(nproc) RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes=schismnode Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N schismnode
for _ in $(seq 100); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.2
done
sinfo

python3 "$SOURCE/tests/oracles/model_fixtures.py" tiny llama-tied "$T/tiny" \
  "${SCHISM_TEST_MODEL:-$SOURCE/models/SmolLM2-135M-Instruct.Q4_1.gguf}" >/dev/null
DATA=${SCHISM_DATA:-$SOURCE/../shared/datasets}
cat > "$T/study.toml" <<TOML
model = "$T/tiny/model.gguf"
n_trials = 4
n_startup_trials = 2
max_response_length = 16
[good_prompts]
path = "$DATA/harmless_train.txt"
split = "[:8]"
[bad_prompts]
path = "$DATA/harmful_train.txt"
split = "[:8]"
[scorer.KeywordRate.prompts]
path = "$DATA/harmful_test.txt"
split = "[:8]"
[scorer.KLDivergence.prompts]
path = "$DATA/harmless_test.txt"
split = "[:4]"
TOML

status=0
# Each worker task is a 2-rank tensor-parallel worker (Gloo on the CPU): 4 worker processes.
SCHISM=$SCHISM SCHISM_PORT=$((BASE + 2)) SCHISM_EXPORT_SOURCE="$T/tiny/hf" SCHISM_WORKER_ARGS="--threads 1" \
  SCHISM_TENSOR_PARALLEL=2 \
  timeout 600 sbatch --wait --ntasks=2 --chdir="$T" --output="$T/job.out" \
  "$SOURCE/deploy/slurm/schism-study.sbatch" "$T/study.toml" || status=$?
cat "$T/job.out"
fail() { echo "FAILED: $*"; tail -20 "$T/slurmctld.log" "$T/slurmd.log" 2>/dev/null; exit 1; }
[ "$status" = 0 ] || fail "the job exited with $status"
STUDY=$(cat "$T/schism-store/slurm-study-id")
grep -q "schism: study $STUDY done" "$T/job.out" || fail "no completion line"
grep -q "^\[Trial .*Refusals:" "$T/job.out" || fail "no Pareto front printed"
grep -q "schism: workers exited with 0" "$T/job.out" || fail "worker tasks did not drain and exit 0"
[ "$(grep -c 'tensor-parallel rank 1 of 2 (gloo, cpu)' "$T/job.out" || true)" = 2 ] ||
  fail "not two tensor-parallel workers of 2 ranks"
[ "$(grep -c '"type":"completed"' "$T/schism-store/$STUDY/journal.log" || true)" = 4 ] || fail "not 4 completed trials"
OUT="$T/schism-exports/$STUDY"
for f in reproduce.json README.md config.json model.safetensors adapter/adapter_config.json; do
  [ -s "$OUT/$f" ] || fail "export is missing $f"
done
grep -q "\"id\": \"$STUDY\"" "$OUT/reproduce.json" || fail "reproduce.json does not name the study"
squeue -h | grep -q . && fail "jobs left in the queue"
echo "PASSED: study $STUDY ran under Slurm with 2 tensor-parallel worker tasks (2 ranks each) and was exported to $OUT"
