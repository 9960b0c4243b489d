/*
 * memlayer.h — the UltraMem memory layer of the model (forward only).
 *
 * For the T tokens of a step, with h = RMSNorm(x) of layer l:
 *   1. q = h Wq: per memory head a row query and a column query (k_dim each);
 *   2. TDQKR scoring (kernels/score.h, US_PK_TUCKER, no MCS): per head the
 *      knn best virtual addresses a in [0, n_keys^2) and their scores
 *      (softmax over the knn scores when memory.weights = "softmax");
 *   3. IVE addressing: physical row = a / G, projector group = a % G
 *      (G = ive_groups; the table has n_keys^2 / G physical rows);
 *   4. one backend lookup for all tokens and heads: grouped weighted sums
 *      P_g [T][G][v_dim] (heads are pooled together, as PKM sums its heads);
 *   5. out_add += sum_g P_g W_g (kernels/ive.h), which the model adds to the
 *      residual stream `skip` layers later.
 * Buffers come from the workspace (us_memlayer_workspace_bytes per step
 * size); nothing is allocated per call.
 */
#ifndef US_MEMLAYER_H
#define US_MEMLAYER_H

#include <stddef.h>
#include <stdint.h>

#include "coordinator/model.h"

/* Bytes of memory-layer workspace for steps of up to max_tokens tokens. */
size_t us_memlayer_workspace_bytes(const us_model_config *cfg, size_t max_tokens);

/* Runs memory layer `layer` on ws->h [T][d_model] and adds its output to
 * out_add [T][d_model]. Errors from scoring or the backend are passed up
 * naming the table; out_add is unchanged unless US_OK. */
int us_memlayer_forward(const us_model *m, uint32_t layer, us_workspace *ws, size_t T,
                        float *out_add, us_err *err);

#endif
