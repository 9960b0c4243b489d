#!/usr/bin/env bash
# The layering rule, written once: which layer's headers each folder may include.
# A quoted include "LAYER/..." (or "coordinator/ROOM/...") outside the folder's
# allowed list fails the check, naming the file, line and the edge.
# Arrows (DESIGN.md): cli -> serve, infer -> model -> lookup -> shard -> proto -> kernels;
# plan is the capacity model and needs only kernels.
set -u
cd "$(dirname "$0")/../.."

allowed() {   # folder -> layers it may include (its own always included)
  case "$1" in
    kernels)           echo "kernels" ;;
    proto)             echo "proto kernels" ;;
    shard)             echo "shard proto kernels" ;;
    coordinator/plan)  echo "coordinator/plan kernels" ;;
    coordinator/lookup) echo "coordinator/lookup shard proto kernels" ;;
    coordinator/model) echo "coordinator/model coordinator/lookup shard proto kernels" ;;
    coordinator/infer) echo "coordinator/infer coordinator/model coordinator/lookup shard proto kernels" ;;
    coordinator/serve) echo "coordinator/serve coordinator/infer coordinator/model coordinator/lookup shard proto kernels" ;;
    coordinator/cli)   echo "coordinator/cli coordinator/serve coordinator/infer coordinator/model coordinator/lookup coordinator/plan shard proto kernels" ;;
    *)                 echo "" ;;
  esac
}

layer_of() {   # an include path -> its layer (coordinator rooms are layers of their own)
  case "$1" in
    coordinator/*/*) echo "${1%/*}" ;;
    coordinator/*)   echo "coordinator" ;;
    */*)             echo "${1%%/*}" ;;
    *)               echo "" ;;
  esac
}

bad=0; files=0
for f in kernels/*.[ch] proto/*.[ch] shard/*.[ch] coordinator/*.[ch] coordinator/*/*.[ch]; do
  [ -f "$f" ] || continue
  files=$((files + 1))
  dir=$(dirname "$f")
  ok=$(allowed "$dir")
  if [ -z "$ok" ]; then
    echo "$f: folder $dir has no place in the layering (coordinator code lives in a room)"; bad=$((bad + 1)); continue
  fi
  while IFS=: read -r line inc; do
    inc=${inc#*\"}; inc=${inc%\"*}
    to=$(layer_of "$inc")
    [ -z "$to" ] && continue
    case " $ok " in *" $to "*) ;; *)
      echo "$f:$line: includes $inc: $dir may not call $to"; bad=$((bad + 1)) ;;
    esac
  done < <(grep -n '^#include "' "$f")
  if [ "$dir" = kernels ] && grep -qE '^#include <(mpi\.h|rdma/)' "$f"; then
    echo "$f: kernels are pure compute: no MPI or fabric headers"; bad=$((bad + 1))
  fi
done
echo "layering: $files files checked, $bad violations"
[ "$bad" -eq 0 ]
