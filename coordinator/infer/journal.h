/*
 * journal.h — crash-safe progress of a batch inference job.
 *
 * Files, for --output OUT:
 *   OUT.journal  append-only: a header line {"ultrashard_journal":1,
 *                "fingerprint":"<16 hex>","sequences":N}, then one line per
 *                finished sequence, in completion order, each the exact
 *                output line of that sequence. Every record is fsync-ed
 *                before the sequence counts as done.
 *   OUT          the output in input order: the longest prefix of input
 *                sequences that are all finished, one line each. Each line
 *                is written, flushed and fsync-ed as soon as it and all
 *                earlier ones are finished.
 *
 * Restart (same command after a crash or kill -9): the journal is read; a
 * torn last record (no newline: killed mid-write) is cut off; OUT is rebuilt
 * from the journal (temp file, fsync, rename), so a half-written or missing
 * OUT line is repaired; finished sequences are marked and skipped. Nothing is
 * lost (a record is durable before the sequence counts as done) and nothing
 * is duplicated (OUT is a pure function of the journal and the input).
 *
 * The fingerprint covers the input bytes, the model and the decoding options
 * (the caller computes it). A journal with another fingerprint is refused
 * (US_EINVAL: "written by a different command"), as is an existing OUT
 * without a journal (US_EEXIST), so a different job never mixes outputs.
 * A record in the middle of the journal that does not parse, or whose id is
 * not in the input, is US_ECORRUPT naming the journal line.
 *
 * One job per output: OUT.lock (created next to OUT, left in place) is
 * flock-ed for the life of the journal; a second job on the same output
 * gets US_EEXIST instead of interleaving records. The kernel releases the
 * lock when the holder dies, so a restart after kill -9 is not blocked.
 */
#ifndef US_JOURNAL_H
#define US_JOURNAL_H

#include <stdint.h>
#include <stdio.h>

#include "coordinator/infer/prompts.h"
#include "kernels/us_status.h"

typedef struct us_journal {
    char   *journal_path;     /* owned */
    char   *out_path;         /* borrowed from the caller */
    int     journal_fd;       /* append */
    int     out_fd;           /* append */
    int     lock_fd;          /* OUT.lock, flock-ed while the job runs */
    char  **lines;            /* [n] finished lines not yet in OUT (no newline), owned */
    uint8_t *done;            /* [n] 1 = finished (journaled) */
    size_t  n, n_done, n_resumed, next_commit;
} us_journal;

/* Opens or creates the journal for `out_path` and `set`, rebuilds OUT. After
 * US_OK, us_journal_is_done(j, i) tells which sequences to skip.
 * Returns: US_OK; US_EEXIST when another job holds OUT or OUT exists without
 * its journal; US_EINVAL when the journal was written by a different command
 * (fingerprint) or the path is too long; US_ECORRUPT naming the journal line
 * of a bad record; US_EIO; US_ENOMEM. */
int us_journal_open(us_journal *j, const char *out_path, const us_prompt_set *set,
                    uint64_t fingerprint, us_err *err);

/* Returns: nonzero when sequence `index` is finished (journaled). */
static inline int us_journal_is_done(const us_journal *j, size_t index)
{
    return j->done[index];
}

/* Records sequence `index` as finished with output line `line` (a single
 * JSON line without newline; copied): journal append + fsync, then commits
 * every now-complete prefix line to OUT (write + fsync).
 * Returns: US_OK; US_EINVAL when the sequence is out of range or already
 * finished; US_EIO naming the file; US_ENOMEM. */
int us_journal_finish(us_journal *j, size_t index, const char *line, us_err *err);

/* Closes the journal and releases OUT's lock. Returns: nothing. */
void us_journal_close(us_journal *j);

#endif
