/*
 * infer_session.h — durable cross-job sessions for `infer` (--sessions DIR).
 *
 * A prompt line with "session": "S" continues session S: its Infini-attention
 * memory (M, z of every layer and head) is loaded from DIR (shard/session.h:
 * versioned, checksummed, crash-safe files) instead of starting at zero, and
 * saved back when the sequence finishes. The KV cache of the unfinished
 * segment is not stored; its tokens are (the "tail"), and the next job feeds
 * them again before the new prompt, which rebuilds the same cache. So a
 * session continued over several jobs computes what one long sequence would:
 *   job 1: BOS + prompt1 + generated1, job 2: prompt2 + generated2, ...
 * (no second BOS). The state is fixed-size whatever the session length.
 *
 * Exactly once with the journal: the saved state also records a key (the
 * job fingerprint and sequence id) and that sequence's output line. The
 * state is saved before the journal record; if a job dies between the two,
 * the restart finds its own key in the session and journals the stored line
 * instead of applying the sequence to the session a second time.
 *
 * extra bytes, little-endian: u32 magic "USS1", u32 n_tail, i32 tail[n_tail],
 * u32 key_len, key, u32 line_len, line.
 */
#ifndef US_INFER_SESSION_H
#define US_INFER_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/model/model.h"
#include "kernels/us_status.h"
#include "shard/session.h"

typedef struct us_session_resume {
    bool     found;          /* a stored state was loaded into the sequence */
    uint64_t tokens_seen;
    int32_t *tail;           /* tokens to feed before the prompt, owned */
    size_t   n_tail;
    char    *done_line;      /* set when `key` already applied: the output, owned */
} us_session_resume;

/* Loads session `sid` from the store into *state (reset first). Not found:
 * fresh state, r->found = false.
 * Returns: US_OK (found or not); US_EINVAL when the stored state's shape does
 * not match the model; US_ECORRUPT for damaged extra bytes; US_ENOMEM; the
 * store's US_EIO / US_ECORRUPT; each naming the session. */
int us_infer_session_load(const us_session_store *store, const char *sid, const char *key,
                          const us_model_config *cfg, us_seq_state *state,
                          us_session_resume *r, us_err *err);

/* One sequence's contribution to its session, as us_infer_session_save keeps it. */
typedef struct us_session_update {
    const char *sid;              /* session id */
    const char *key;              /* job fingerprint / sequence id: applied exactly once */
    const us_seq_state *state;    /* M, z, tokens_seen after the sequence */
    const int32_t *tail;          /* tokens of the unfinished segment, fed or not */
    size_t n_tail;
    const char *line;             /* the sequence's output line */
} us_session_update;

/* Saves u->state (M, z, tokens_seen) with the tail tokens, key and output line.
 * Returns: US_OK; US_ENOMEM; the store's error (US_EIO, US_EINVAL for a bad
 * session id), each naming the session. */
int us_infer_session_save(const us_session_store *store, const us_model_config *cfg,
                          const us_session_update *u, us_err *err);

/* Frees what a load left in *r. Returns: nothing. */
void us_session_resume_free(us_session_resume *r);

#endif
