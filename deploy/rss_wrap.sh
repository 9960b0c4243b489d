#!/bin/sh
# Per-rank peak memory of an MPI job:
#   mpirun -n N deploy/rss_wrap.sh OUTDIR TAG build/ultrashard ...
# runs the command under /usr/bin/time and writes its max RSS in KiB (the
# last line of OUTDIR/TAG.rank<R>, R = the MPI rank) when it exits. The exit
# code is the command's. Used by deploy/demo_scale.sh and the cluster recipes.
set -eu
if [ $# -lt 3 ]; then
  echo "usage: rss_wrap.sh OUTDIR TAG COMMAND [ARGS...]" >&2
  exit 2
fi
out=$1 tag=$2
shift 2
rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${SLURM_PROCID:-0}}}
exec /usr/bin/time -f %M -o "$out/$tag.rank$rank" "$@"
