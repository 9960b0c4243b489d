#!/usr/bin/env bash
# The cluster recipe of deploy/hostfile.example (and deploy/slurm.example.sbatch,
# whose srun lines mirror it) run across 3 emulated hosts (deploy/lab/lab.sh,
# network namespaces, 2 slots each, --map-by node like the recipe):
#   1. ultrashard init-model (one process; the model dir is on the file
#      system every host sees)
#   2. mpirun -n 3 --map-by node ultrashard import: the store built in
#      parallel, one rank per host, rank s writing shard s
#   3. mpirun -n 3 ultrashard verify --expect-shards 3 (every block's CRC)
#   4. mpirun -n 6 --map-by node ultrashard infer --coordinators 3: one
#      coordinator per host, shards 0..2 on ranks 3..5 = the hosts that wrote them
#   5. the output equals a one-process infer over the same store, byte for byte
# Own prefix and subnets. Exit 77 when not root or namespaces cannot be created.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
US="$PWD/$B/ultrashard"
LAB=deploy/lab/lab.sh
export US_LAB_PREFIX="cr$(($$ % 100000))-"
export US_LAB_SUBNET=10.231.220.0/24 US_LAB_RELAY_SUBNET=10.231.221.0/24
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
if [ "$(id -u)" -ne 0 ] || [ ! -x "$LAB" ]; then
  echo "skip: cluster_recipe_lab needs root and deploy/lab/lab.sh"; exit 77
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/us-cluster-recipe.XXXXXX")
cleanup() { bash "$LAB" down >/dev/null 2>&1 || true; rm -rf "$T"; }
trap cleanup EXIT
if ! bash "$LAB" up 3 >/dev/null 2>&1; then
  echo "skip: the namespace lab cannot be built here (see deploy/lab/README.md)"; exit 77
fi
HOSTS=3 C=3 N=6
S=$((N - C))

echo "== 1 init-model"
"$US" init-model --preset small --out "$T/model" --seed 5 >/dev/null
for i in $(seq 0 8); do
  printf '{"id": "q%d", "prompt": "Cluster recipe prompt %d, one coordinator per host. ", "max_tokens": 12}\n' "$i" "$i"
done >"$T/prompts.jsonl"

echo "== 2 import in parallel: $S ranks, one per host"
out=$(bash "$LAB" run -n "$S" --map-by node "$US" import --out "$T/store" \
  --table "table_0=$T/model/values/table_0.npy" --table "table_1=$T/model/values/table_1.npy" \
  --dtype bf16 --shards "$S" --block-bits 8 --seed 5 --quiet)
echo "$out"
grep -q "\"shards\":$S,\"ranks\":$S" <<<"$out"
# rank r ran on host h(r % HOSTS): the recipe's one writer per host
"$US" inspect "$T/store" | grep -q "format 2, $S shards, 2 tables"

echo "== 3 verify"
bash "$LAB" run -n "$S" --map-by node "$US" verify "$T/store" --expect-shards "$S"

echo "== 4 infer --coordinators $C across $HOSTS hosts"
bash "$LAB" run -n "$N" --map-by node "$US" infer --model "$T/model" --store "$T/store" \
  --coordinators "$C" --input "$T/prompts.jsonl" --output "$T/out.jsonl" \
  --batch 4 --temperature 0.8 --seed 9 2>"$T/infer.err" | tee "$T/infer.json"
grep -q '"sequences":9' "$T/infer.json"
# one coordinator per host: ranks 0..2 were on h0, h1, h2
bash "$LAB" run -n "$N" --map-by node sh -c 'echo "rank $OMPI_COMM_WORLD_RANK $(hostname)"' \
  | sort >"$T/map.txt"
cat "$T/map.txt"
for r in 0 1 2; do grep -qx "rank $r h$r" "$T/map.txt"; done

echo "== 5 one process over the same store"
"$US" infer --model "$T/model" --store "$T/store" --input "$T/prompts.jsonl" \
  --output "$T/one.jsonl" --batch 4 --temperature 0.8 --seed 9 >/dev/null 2>&1
cmp "$T/out.jsonl" "$T/one.jsonl"
echo "cluster_recipe_lab ok: import ($S ranks on $HOSTS hosts), verify, infer ($C coordinators," \
     "$S shards) equal to one process"
