/*
 * memlayer.h — the UltraMem memory layer of the model (forward only).
 *
 * For the T tokens of a step, with h = RMSNorm(x) of layer l:
 *   1. q = h Wq: per memory head a row query and a column query (k_dim each),
 *      each LayerNorm-ed without affine when memory.query_norm (UltraMem);
 *   2. TDQKR scoring (kernels/score.h, US_PK_TUCKER, no MCS): per head the
 *      knn best virtual addresses a in [0, n_keys^2) and their scores
 *      (softmax over the knn scores when memory.weights = "softmax");
 *   3. IVE addressing: physical row = a / G, projector group = a % G
 *      (G = ive_groups; the table has n_keys^2 / G physical rows);
 *   4. one backend lookup for all tokens and heads: grouped weighted sums
 *      P_g [T][G][v_dim] (heads are pooled together, as PKM sums its heads);
 *   5. out_add += sum_g P_g W_g (kernels/ive.h), which the model adds to the
 *      residual stream `skip` layers later.
 * Steps 1-4 are us_memlayer_begin, called at layer l; step 5 (after waiting
 * for an asynchronous backend) is us_memlayer_end, called at the layer the
 * output is added to: a distributed lookup overlaps the layers in between,
 * which is what UltraMem's skip structure is for. Each memory table has its
 * own lookup buffers, so several lookups may be in flight.
 * Buffers come from the workspace (us_memlayer_workspace_bytes per step
 * size); nothing is allocated per call.
 */
#ifndef US_MEMLAYER_H
#define US_MEMLAYER_H

#include <stddef.h>
#include <stdint.h>

#include "coordinator/model/model.h"

/* Returns: bytes of memory-layer workspace for steps of up to max_tokens
 * tokens (0 without memory layers); cannot fail. */
size_t us_memlayer_workspace_bytes(const us_model_config *cfg, size_t max_tokens);

/* Scores ws->h [T][d_model] of memory layer `layer` and starts its lookup
 * (or does it, for a synchronous backend).
 * Returns: US_OK; US_EINVAL when no backend is attached; a scoring error
 * (US_EINVAL) or the backend's US_E* code, prefixed with the table. After
 * an error no lookup is in flight. */
int us_memlayer_begin(const us_model *m, uint32_t layer, us_workspace *ws, size_t T,
                      us_err *err);

/* Finishes the lookup begun for `layer` and adds its projected output to
 * out_add [T][d_model] (out_add NULL: only finish, e.g. on an error path).
 * Must be called once after every successful begin.
 * Returns: US_OK; the asynchronous backend's lookup_end code as is. */
int us_memlayer_end(const us_model *m, uint32_t layer, us_workspace *ws, size_t T,
                    float *out_add, us_err *err);

/* The selection of the last us_memlayer_begin of `layer` on ws (valid until
 * its next begin): per token, heads x knn physical rows, their weights and
 * IVE groups, [T][heads * knn] each (the remote memory layer of serve).
 * Returns: nothing; borrowed pointers into ws. */
void us_memlayer_selection(const us_model *m, uint32_t layer, const us_workspace *ws,
                           const uint64_t **rows, const float **weights, const uint8_t **groups);

#endif
