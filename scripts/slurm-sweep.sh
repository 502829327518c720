#!/usr/bin/env bash
# A sweep spread over a Slurm job array: task i of N runs the points k with k mod N = i-1.
#
#   sbatch --array=1-8 scripts/slurm-sweep.sh examples/recipes/lenet5-sweep.yaml out/lenet5-sweep
#   (when every task is done)
#   build/compress/compress report out/lenet5-sweep/shard-*/ledger.jsonl -o out/lenet5-sweep/report
#
# A task that is killed (time limit, pre-emption) can simply be resubmitted: --resume keeps
# every point it finished. Each task writes only its own directory, so no locking is needed.
# Outside Slurm, set SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT yourself to run one slice.
#SBATCH --job-name=joulecut-sweep
#SBATCH --cpus-per-task=2
#SBATCH --time=04:00:00
#SBATCH --output=joulecut-sweep-%A_%a.log
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: sbatch --array=1-N $0 RECIPE OUTPUT_DIR [GRID]" >&2
  exit 2
fi
recipe=$1 out=$2 grid=${3:-}
task=${SLURM_ARRAY_TASK_ID:?not a job array task: submit with sbatch --array=1-N}
count=${SLURM_ARRAY_TASK_COUNT:-$(( ${SLURM_ARRAY_TASK_MAX:?} - ${SLURM_ARRAY_TASK_MIN:?} + 1 ))}
first=${SLURM_ARRAY_TASK_MIN:-1}
shard=$(( task - first + 1 ))
compress=${COMPRESS:-$(cd "$(dirname "$0")/.." && pwd)/build/compress/compress}
# One thread per allocated CPU; the manifest records it.
threads=${SLURM_CPUS_PER_TASK:-1}
args=(--threads "$threads" sweep "$recipe" -o "$out/shard-$shard" --shard "$shard/$count" --resume --no-progress)
[ -n "$grid" ] && args+=(--grid "$grid")
mkdir -p "$out"
exec "$compress" "${args[@]}"
