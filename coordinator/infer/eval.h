/*
 * eval.h — bits per byte of a model on a text file (`ultrashard eval`).
 *
 * The file's n bytes b_0..b_{n-1} are scored as one sequence that starts with
 * BOS: the model is fed BOS, b_0, ..., b_{n-2} and the logits after each
 * input give p(b_i | BOS, b_0..b_{i-1}), a softmax over the full vocabulary
 * of 259 tokens (bytes, BOS, EOS, PAD; no renormalisation to the 256 bytes;
 * no EOS is scored at the end). So exactly n predictions are counted:
 *
 *   nll_nats      = sum_i -ln p(b_i | ...)            (accumulated in double)
 *   bits_per_byte = nll_nats / (n ln 2)
 *
 * The text streams through us_model_forward in chunks of batch_tokens tokens
 * (segment-wise Infini-attention carries the context, so memory is constant
 * whatever the file size: one sequence state, one workspace, one chunk of
 * logits); the file is never loaded whole. Chunking does not change the
 * result beyond float rounding (model.h: chunked prefill = one pass).
 */
#ifndef US_EVAL_H
#define US_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/infer/model_job.h"
#include "coordinator/model/model.h"
#include "kernels/us_status.h"

typedef struct us_eval_opts {
    const char *text_path;
    size_t      batch_tokens;   /* tokens per forward step (>= 1) */
    bool        progress;       /* a line on stderr at most every 5 seconds */
} us_eval_opts;

typedef struct us_eval_result {
    uint64_t bytes;             /* n: predictions counted */
    double   nll_nats;
    double   bits_per_byte;
    double   seconds;
    double   tokens_per_s;      /* tokens fed per second */
} us_eval_result;

/* Scores the file with m (its backend attached).
 * Returns: US_OK; US_ENOTFOUND (no file) or US_EIO (unreadable) naming the
 * path; US_EINVAL for an empty file or batch_tokens 0; US_ENOMEM; the
 * forward pass's error as is (prefixed with the byte offset). */
int us_eval_run(const us_model *m, const us_eval_opts *o, us_eval_result *r, us_err *err);

/* `ultrashard eval`: loads the model on the coordinator, attaches its values
 * (model_job.h: DIR/values, a store, or the shard ranks under mpirun, one
 * coordinator) and scores the file. The coordinator prints the result on
 * stdout: with json one line {"event":"eval_done","bits_per_byte":..,
 * "bytes":..,"nll_nats":..,"tokens_per_s":..,"seconds":..}, else a sentence.
 * Returns: as us_model_job_run and us_eval_run (US_EINVAL for a bad model
 * dir's config, US_ENOTFOUND for a missing one, naming the path). */
int us_eval_job_run(const us_model_job_opts *job, const us_eval_opts *o, bool json,
                    int *argc, char ***argv, us_err *err);

#endif
