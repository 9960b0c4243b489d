#!/usr/bin/env bash
# `make demo-scale`: the billion-value run, end to end, on this machine.
#   1. init-model of deploy/demo_scale.config.json: one UltraMem layer with
#      n_keys 4096, ive_groups 4, v_dim 256 -> 4096^2/4 = 4,194,304 rows x 256
#      = 1.07e9 values; its value table is written as f32 .npy (4.3 GB)
#   2. mpirun -n S ultrashard import: the store (bf16, 2.1 GB, S shards) built
#      in parallel, rank r writing shard r            -> store build GB/s
#   3. mpirun -n S+C ultrashard infer --coordinators C over that store
#                                                     -> generated tokens/s
#   4. one process on every 8th prompt: its lines must be byte-identical to
#      the distributed run's
#   5. mpirun -n 8 ultrashard bench lookup --on-the-fly of a synthetic table
#      (default 390,625,000 rows x 256 = 1.0e11 bf16 values, 200 GB if it
#      were stored) through the same lookup round engine: shards compute each
#      requested row from (seed, table, row), so nothing is materialised
#                                                     -> tokens/s vs 1 process
# Every step's per-rank max RSS is recorded (deploy/rss_wrap.sh). The store
# and the .npy are removed at the end unless KEEP=1.
#
# Settings (environment): US_DEMO_SCALE_DIR (scratch, default $B/demo-scale),
# KEEP=1, US_DEMO_SCALE_CONFIG, US_DEMO_SCALE_SHARDS (4), US_DEMO_SCALE_COORDINATORS
# (2), US_DEMO_SCALE_PROMPTS (64), US_DEMO_SCALE_TOKENS (32 per prompt),
# US_DEMO_SCALE_DTYPE (bf16), US_DEMO_SCALE_SYNTH_ROWS (390625000),
# US_DEMO_SCALE_SYNTH_DIM (256) and US_DEMO_SCALE_SYNTH_BATCHES (40) for
# step 5 (0 rows skips it), MPIRUN.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
US="$PWD/$B/ultrashard"
WRAP="$PWD/deploy/rss_wrap.sh"
MPIRUN=${MPIRUN:-mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none --bind-to none}
export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
work=${US_DEMO_SCALE_DIR:-$B/demo-scale}
config=${US_DEMO_SCALE_CONFIG:-deploy/demo_scale.config.json}
shards=${US_DEMO_SCALE_SHARDS:-4}
coords=${US_DEMO_SCALE_COORDINATORS:-2}
n_prompts=${US_DEMO_SCALE_PROMPTS:-64}
max_tokens=${US_DEMO_SCALE_TOKENS:-32}
dtype=${US_DEMO_SCALE_DTYPE:-bf16}
synth_rows=${US_DEMO_SCALE_SYNTH_ROWS:-390625000}
synth_dim=${US_DEMO_SCALE_SYNTH_DIM:-256}
synth_batches=${US_DEMO_SCALE_SYNTH_BATCHES:-40}
synth_ranks=8

die() { echo "demo-scale: $*" >&2; exit 1; }
[ -x "$US" ] || die "$US not built (run make -j2)"
[ -x /usr/bin/time ] || die "/usr/bin/time is needed for the per-rank RSS (apt-get install time)"
[ -f "$config" ] || die "no config $config"
ranks=$((shards + coords))

# Shape of the model's value tables (rows = n_keys^2 / ive_groups per memory layer).
read -r layers rows vdim < <(/usr/bin/python3 - "$config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); m = c["memory"]
print(sum(1 for l in c["layers"] if l == "memory"), m["n_keys"] ** 2 // m["ive_groups"], m["v_dim"])
PY
)
values=$((layers * rows * vdim))
case $dtype in f32) dbytes=4 ;; bf16|f16) dbytes=2 ;; int8) dbytes=1 ;; *) die "dtype $dtype?" ;; esac
npy_bytes=$((values * 4))
store_bytes=$((values * dbytes))
need=$((npy_bytes + store_bytes + (1 << 30)))   # + 1 GiB for the rest and slack
gb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e9 }'; }

mkdir -p "$work"
work=$(cd "$work" && pwd)
avail=$(df -B1 --output=avail "$work" | tail -1 | tr -d ' ')
if [ "$avail" -lt "$need" ]; then
  die "not enough disk under $work: need $(gb "$need") GB ($(gb "$npy_bytes") GB f32 .npy +" \
      "$(gb "$store_bytes") GB $dtype store + 1 GiB), $(gb "$avail") GB free." \
      "Set US_DEMO_SCALE_DIR to a file system with more room."
fi

progress_pid=
# Background progress line every 5 s: progress_start LABEL [FILE TOTAL_BYTES]
progress_start() {
  local label=$1 file=${2:-} total=${3:-0} t0
  t0=$(date +%s)
  ( while sleep 5; do
      el=$(( $(date +%s) - t0 ))
      if [ -n "$file" ] && [ -e "$file" ]; then
        sz=$(stat -c %s "$file")
        awk -v l="$label" -v e="$el" -v s="$sz" -v t="$total" \
          'BEGIN { printf "   ... %s: %d s, %.2f of %.2f GB (%d%%)\n", l, e, s/1e9, t/1e9, 100*s/t }'
      else
        echo "   ... $label: $el s"
      fi
    done ) &
  progress_pid=$!
}
progress_stop() {
  if [ -n "$progress_pid" ]; then
    kill "$progress_pid" 2>/dev/null || true
    wait "$progress_pid" 2>/dev/null || true
    progress_pid=
  fi
}
cleanup() {
  progress_stop
  if [ "${KEEP:-0}" = 1 ]; then
    echo "demo-scale: KEEP=1: store and model kept in $work"
  else
    rm -rf "$work/store" "$work/store.partial" "$work/model/values"
  fi
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
jfield() { grep -o "\"$2\":[-0-9.e+]*" "$1" | tail -1 | cut -d: -f2; }
# rss_report TAG: one line per rank "rank R ROLE MiB" and the max in MiB
rss_max=0
rss_report() {
  local tag=$1 n=$2 c=$3 r kb role
  rss_max=0
  for ((r = 0; r < n; r++)); do
    kb=$(tail -1 "$work/rss/$tag.rank$r" 2>/dev/null || echo 0)
    role=shard; [ "$r" -lt "$c" ] && role=coordinator
    printf '   rank %d (%s): max RSS %.1f MiB\n' "$r" "$role" "$(awk -v k="$kb" 'BEGIN{print k/1024}')"
    if [ "$kb" -gt "$rss_max" ]; then rss_max=$kb; fi
  done
}

rm -rf "$work/model" "$work/store" "$work/store.partial" "$work/rss" "$work"/*.jsonl*
mkdir -p "$work/rss"
t_all=$(now)
echo "== demo-scale: $values values ($layers memory table(s) of $rows x $vdim), scratch $work"
echo "   disk: $(gb "$avail") GB free, this run needs $(gb "$need") GB"

echo "== 1/5 init-model --config $config (f32 value table $(gb "$npy_bytes") GB)"
t0=$(now)
progress_start "values/table_0.npy" "$work/model/values/table_0.npy" "$((rows * vdim * 4))"
"$US" init-model --config "$config" --out "$work/model" --seed 1
progress_stop
t_init=$(secs "$t0" "$(now)")
echo "   $t_init s"

echo "== 2/5 mpirun -n $shards ultrashard import --dtype $dtype --shards $shards (parallel store build)"
tables=()
for ((t = 0; t < layers; t++)); do
  tables+=(--table "table_$t=$work/model/values/table_$t.npy")
done
t0=$(now)
$MPIRUN -n "$shards" "$WRAP" "$work/rss" import "$US" import --out "$work/store" "${tables[@]}" \
  --dtype "$dtype" --shards "$shards" --seed 1 >"$work/import.json"
t_import=$(secs "$t0" "$(now)")
written=$(jfield "$work/import.json" bytes_written)
read_b=$(jfield "$work/import.json" bytes_read)
imp_s=$(jfield "$work/import.json" seconds)
imp_gbs=$(awk -v b="$written" -v s="$imp_s" 'BEGIN { printf "%.3f", b / s / 1e9 }')
imp_read_gbs=$(awk -v b="$read_b" -v s="$imp_s" 'BEGIN { printf "%.3f", b / s / 1e9 }')
echo "   $(gb "$written") GB written in $imp_s s: $imp_gbs GB/s written ($imp_read_gbs GB/s f32 read), wall $t_import s with mpirun start"
rss_report import "$shards" 0
rss_import=$rss_max
"$US" inspect "$work/store" >"$work/inspect.txt"
head -8 "$work/inspect.txt"

echo "== 3/5 mpirun -n $ranks ultrashard infer --coordinators $coords ($n_prompts prompts x $max_tokens tokens, $shards shard ranks)"
for ((i = 0; i < n_prompts; i++)); do
  printf '{"id": "p%03d", "prompt": "Prompt %d: a billion memory values, %d shards, %d coordinators. ", "max_tokens": %d}\n' \
    "$i" "$i" "$shards" "$coords" "$max_tokens"
done >"$work/prompts.jsonl"
infer_args=(--model "$work/model" --store "$work/store" --batch 16 --temperature 0.7 --seed 3)
t0=$(now)
$MPIRUN -n "$ranks" "$WRAP" "$work/rss" infer "$US" infer "${infer_args[@]}" --coordinators "$coords" \
  --input "$work/prompts.jsonl" --output "$work/out.jsonl" >"$work/infer.json"
t_infer=$(secs "$t0" "$(now)")
tps=$(jfield "$work/infer.json" generated_tokens_per_s)
gen=$(jfield "$work/infer.json" generated_tokens)
echo "   $gen tokens generated: $tps generated tokens/s (wall $t_infer s with mpirun start and store open)"
rss_report infer "$ranks" "$coords"
rss_infer=$rss_max

echo "== 4/5 one process on every 8th prompt, compared with the distributed output"
awk 'NR % 8 == 1' "$work/prompts.jsonl" >"$work/sample.jsonl"
n_sample=$(wc -l <"$work/sample.jsonl")
"$WRAP" "$work/rss" single "$US" infer "${infer_args[@]}" \
  --input "$work/sample.jsonl" --output "$work/single.jsonl" >"$work/single.json"
tps1=$(jfield "$work/single.json" generated_tokens_per_s)
rss_single=$(tail -1 "$work/rss/single.rank0")
same=$(grep -cxF -f "$work/single.jsonl" "$work/out.jsonl" || true)
if [ "$same" -ne "$n_sample" ] || [ "$(wc -l <"$work/single.jsonl")" -ne "$n_sample" ]; then
  die "FAIL: only $same of $n_sample sampled sequences are byte-identical to the one-process run" \
      "($work/single.jsonl vs $work/out.jsonl)"
fi
echo "   $same of $n_sample sampled sequences byte-identical; one process: $tps1 generated tokens/s, max RSS $((rss_single / 1024)) MiB"

synth_values=$((synth_rows * synth_dim))
if [ "$synth_rows" -gt 0 ]; then
  echo "== 5/5 mpirun -n $synth_ranks ultrashard bench lookup --on-the-fly: synthetic $synth_rows x $synth_dim bf16 = $synth_values values ($(gb $((synth_values * 2))) GB if stored)"
  t0=$(now)
  # rows computed per request on the shards and, for the one-process
  # baseline, per batch on rank 0: no rank holds the table
  progress_start "bench lookup ($synth_batches batches, rows computed on the fly)"
  $MPIRUN -n "$synth_ranks" "$WRAP" "$work/rss" synth "$US" bench lookup --rows "$synth_rows" \
    --dim "$synth_dim" --dtype bf16 --transports mpi --modes push --placements row \
    --tokens 256 --k 32 --batches "$synth_batches" --on-the-fly >"$work/synth.out"
  progress_stop
  t_synth=$(secs "$t0" "$(now)")
  grep '^{' "$work/synth.out" >"$work/synth.json"
  stps=$(jfield "$work/synth.json" tokens_per_s)
  sbase=$(jfield "$work/synth.json" baseline_tokens_per_s)
  sratio=$(jfield "$work/synth.json" ratio_vs_baseline)
  serr=$(jfield "$work/synth.json" max_rel_err)
  echo "   push, row placement, 256 tokens x k 32 per batch: $stps tokens/s distributed, $sbase one process (ratio $sratio), max rel err $serr; wall $t_synth s"
  rss_report synth "$synth_ranks" 1
  rss_synth=$rss_max
else
  echo "== 5/5 skipped (US_DEMO_SCALE_SYNTH_ROWS=0)"
  stps=0 sratio=0 rss_synth=0 t_synth=0
fi

t_total=$(secs "$t_all" "$(now)")
printf '{"demo":"scale","values":%d,"dtype":"%s","shards":%d,"coordinators":%d,"store_bytes":%d,"store_build_s":%s,"store_build_gb_per_s":%s,"import_max_rss_kb":%d,"generated_tokens":%d,"generated_tokens_per_s":%s,"infer_max_rss_kb":%d,"single_tokens_per_s":%s,"single_max_rss_kb":%d,"sample_identical":%d,"synth_values":%d,"synth_ranks":%d,"synth_tokens_per_s":%s,"synth_ratio":%s,"synth_max_rss_kb":%d,"total_s":%s}\n' \
  "$values" "$dtype" "$shards" "$coords" "$written" "$imp_s" "$imp_gbs" "$rss_import" "$gen" "$tps" \
  "$rss_infer" "$tps1" "$rss_single" "$same" "$synth_values" "$synth_ranks" "$stps" "$sratio" \
  "$rss_synth" "$t_total"
echo "demo-scale: done in $t_total s"
