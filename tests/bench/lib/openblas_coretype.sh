# Sourced by tests/bench/{kernels,models}.sh (not a benchmark itself: only
# tests/bench/*.sh are `make bench-NAME` targets).
# OpenBLAS 0.3.21 (Debian, DYNAMIC_ARCH) does not recognise this VM's CPU
# ("Intel Xeon Processor", later "AMD EPYC" family 26) and falls back to its
# SSE3 "Prescott" kernels. Measured here (1 thread, noisy): sgemm ~20 GFLOP/s
# that way, ~50 with the Haswell (AVX2+FMA) kernels, ~90 with SkylakeX
# (AVX-512). Unless the caller chose a core type, use the best one the CPU
# flags allow.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  has() { case " $flags " in *" $1 "*) return 0;; esac; return 1; }
  if has avx512f && has avx512bw && has avx512vl; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif has avx2 && has fma; then
    export OPENBLAS_CORETYPE=Haswell
  fi
fi
