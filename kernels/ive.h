/*
 * ive.h — UltraMem implicit value expansion (IVE) projection.
 *
 * E virtual tables are one physical table seen through E linear projectors.
 * The lookup pools physical rows per projector group p:
 *   P_p = sum_i w_i V[row_i]   over the addresses whose group is p,
 * and this kernel applies the projectors: out = sum_p P_p W_p.
 *
 *   pooled [T][n_groups][v_dim]   (the gather's grouped output)
 *   W      [n_groups][v_dim][d_out] (row-major; W_p = W + p * v_dim * d_out)
 *   out    [T][d_out]
 *
 * Because pooled rows are [P_0 | P_1 | ...] and the W_p are stacked, the E
 * small GEMMs sum_p P_p W_p are exactly one GEMM (T x E*v_dim) by
 * (E*v_dim x d_out); us_ive_project issues that single cblas_sgemm, which
 * is the same arithmetic with one call. accumulate = 1 adds to out
 * (out += ...), 0 overwrites it. us_ive_project_ref is the scalar reference.
 */
#ifndef US_IVE_H
#define US_IVE_H

#include <stddef.h>

/* Returns: nothing; cannot fail (T = 0 or d_out = 0 is a no-op). */
void us_ive_project(float *out, const float *pooled, const float *W, size_t T,
                    size_t n_groups, size_t v_dim, size_t d_out, int accumulate);

/* Returns: nothing; cannot fail. */
void us_ive_project_ref(float *out, const float *pooled, const float *W, size_t T,
                        size_t n_groups, size_t v_dim, size_t d_out, int accumulate);

#endif
