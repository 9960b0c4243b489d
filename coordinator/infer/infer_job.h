/*
 * infer_job.h — one `ultrashard infer` job: prompts in, results out, on one
 * process or under mpirun.
 *
 * Single process (no mpirun, or one rank): load the prompts, the model and
 * its memory tables (DIR/values, or a store opened in this process), open
 * the journal and decode (infer.h). Under mpirun with N > 1 ranks the memory
 * tables live on shard ranks: every rank opens its part of the store
 * (coordinator/model/memory_dist.h, collective) and the job runs through
 * us_job_run (coordinator/lookup/job.h): the coordinator decodes, shard-only
 * ranks serve its lookups until it finishes. With coordinators = C > 1,
 * ranks 0..C-1 each decode their part of the prompts and rank 0 writes the
 * output (infer_multi.h), byte-identical to one process.
 *
 * The journal's fingerprint says what "the same command" means: the input
 * bytes, the model's config, the weights file's size and mtime (hashing a
 * large weights file at every start would cost more than it protects), the
 * decoding options, the sessions directory and the store path.
 */
#ifndef US_INFER_JOB_H
#define US_INFER_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "coordinator/infer/infer.h"
#include "coordinator/lookup/lookup.h"
#include "coordinator/model/memory_dist.h"
#include "kernels/us_status.h"

typedef struct us_infer_job_opts {
    const char *model_dir;       /* init-model's directory */
    const char *input;           /* prompts, JSONL */
    const char *output;          /* results, JSONL (output.journal next to it) */
    const char *store_dir;       /* memory tables from a store; NULL = model_dir/values */
    const char *transport;       /* mpirun jobs: "mpi" or "fabric" */
    us_lookup_mode lookup_mode;  /* mpirun jobs: AUTO, PUSH or PULL */
    int coordinators;            /* mpirun jobs: decoding ranks (infer_multi.h); 0 = 1 */
    double scrub_mb_per_s;       /* mpirun jobs: shards' idle-time CRC re-check rate; 0 = off */
    uint32_t max_tokens;         /* default per-line max_tokens */
    size_t max_prompt_bytes;     /* longer prompts are refused */
    us_infer_opts infer;         /* batching, sampling, sessions, progress */
} us_infer_job_opts;

/* Runs the job (argc/argv as for MPI_Init when started by mpirun). The
 * coordinator prints one {"event":"infer_done",...} JSON line on stdout.
 * Returns: US_OK; on the coordinator the first error of the job with its
 * message: US_EINVAL (bad prompt line, session line without sessions_dir,
 * several ranks without store_dir, coordinators that leave no shard rank or
 * more than one coordinator without mpirun), US_EIO / US_ENOTFOUND / US_ECORRUPT
 * (model, store, prompt or journal files), US_EVERSION, US_ENOMEM; US_EMPI
 * when MPI cannot start. Every rank returns the error of a failed
 * distributed open. Aborts the job when the shards' serving or the
 * coordinator's finish fails (us_job_run). */
int us_infer_job_run(const us_infer_job_opts *o, int *argc, char ***argv, us_err *err);

/* Collective over w: every rank reads DIR/config.json (table count, k,
 * groups) and opens its part of jo->store_dir for lookups of up to
 * jo->infer.batch_tokens tokens (memory_dist.h); serve opens its job so too.
 * Returns: US_OK; US_EINVAL without store_dir; the config's or
 * us_memory_dist_open's errors (*dist closed). */
int us_infer_job_open_dist(const us_world *w, us_memory_dist *dist,
                           const us_infer_job_opts *jo, us_err *err);

#endif
