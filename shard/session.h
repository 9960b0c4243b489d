/*
 * session.h — durable, versioned Infini-attention memory states.
 *
 * A session is one long sequence being decoded, possibly across many jobs.
 * Its state is fixed-size whatever the context length: per layer and head a
 * memory matrix M (d_key x d_value) and a normaliser z (d_key), plus the
 * number of tokens seen and opaque model bytes (`extra`, e.g. tokens of an
 * unfinished segment).
 *
 * Storage contract:
 *   <dir>/sessions/<id>/gen-<20-digit generation>.pb
 * Each file is one protobuf SessionState (proto/ultrashard.proto) whose
 * crc32c covers the memory, norm and extra bytes. A save writes generation
 * g+1 crash-safely (temp file, fsync, rename, fsync of the directory) and
 * only then removes generations older than g: the previous version is never
 * touched by a save, so a crash or a full disk at any point leaves a loadable
 * state. Load takes the newest generation that parses and whose checksum
 * holds; a damaged newer file is reported (in `note`) and skipped.
 *
 * Placement: the owner shard of a session is jump_hash(mix64(SESSIONS table
 * id, fnv1a64(id), seed), n_shards), the same function as for blocks, so any
 * rank can find a session without a directory service.
 *
 * Session ids: 1..US_SESSION_ID_MAX characters of [A-Za-z0-9._-], not
 * starting with '.', so an id is always a safe single path component.
 */
#ifndef US_SESSION_H
#define US_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"

#define US_SESSION_ID_MAX 128
/* Reserved table id for session placement (tables use small ids). */
#define US_SESSION_TABLE_ID 0xfffffff0u

typedef struct us_session_state {
    char     id[US_SESSION_ID_MAX + 1];
    uint64_t generation;      /* set by save (previous + 1) and by load */
    uint64_t tokens_seen;
    uint32_t layers, heads, d_key, d_value;
    float   *memory;          /* [layers][heads][d_key][d_value] */
    float   *norm;            /* [layers][heads][d_key] */
    uint8_t *extra;           /* may be NULL when extra_bytes == 0 */
    size_t   extra_bytes;
} us_session_state;

/* US_OK if id is a valid session id, else US_EINVAL naming the problem.
 * Returns: US_OK, or US_EINVAL naming the problem.
 */
int us_session_check_id(const char *id, us_err *err);

/* Owner shard index in [0, n_shards).
 * Returns: the owner shard index in [0, n_shards).
 */
int us_session_owner(const char *id, uint64_t seed, int n_shards);

/* Allocates zeroed memory/norm arrays for the given shape; extra is NULL.
 * Returns: US_OK; US_EINVAL for a bad id or shape; US_ENOMEM.
 */
int us_session_init(us_session_state *s, const char *id, uint32_t layers,
                    uint32_t heads, uint32_t d_key, uint32_t d_value, us_err *err);

/* Saves s as the next generation under dir (creating sessions/<id>/) and sets
 * s->generation. On error nothing visible changes and s->generation keeps its
 * old value. Keeps the new and the previous generation, removes older ones.
 * Returns: US_OK; US_EINVAL (bad id); US_EIO naming the file; US_ENOMEM.
 */
int us_session_save(const char *dir, us_session_state *s, us_err *err);

/* Loads the newest valid generation of `id` into *out (allocating arrays;
 * free with us_session_free). US_ENOTFOUND if the session has no file;
 * US_ECORRUPT if every generation is damaged. `note` (may be NULL, size
 * note_bytes) receives a message when a newer damaged generation was skipped.
 * Returns: US_OK; US_ENOTFOUND; US_ECORRUPT; US_EINVAL (bad id); US_EIO; US_ENOMEM.
 */
int us_session_load(const char *dir, const char *id, us_session_state *out,
                    char *note, size_t note_bytes, us_err *err);

/* Checks that a loaded state has the shape the model expects.
 * Returns: US_OK, or US_EINVAL naming the session and the differing dimension.
 */
int us_session_check_shape(const us_session_state *s, uint32_t layers, uint32_t heads,
                           uint32_t d_key, uint32_t d_value, us_err *err);

/* Returns: nothing; *s is zeroed. */
void us_session_free(us_session_state *s);

/* Wire/file form of a state: one protobuf SessionState with the given
 * generation and the CRC-32C of memory, norm and extra. *out is malloc-ed.
 * Returns: US_OK, or US_ENOMEM.
 */
int us_session_pack(const us_session_state *s, uint64_t generation, uint8_t **out,
                    size_t *out_bytes, us_err *err);
/* Parses and fully checks (version, id, shape, checksum) a packed state;
 * `what` names its origin (file or rank) in messages.
 * Returns: US_OK; US_ECORRUPT / US_EVERSION naming `what`; US_ENOMEM.
 */
int us_session_unpack(const uint8_t *data, size_t bytes, const char *id, const char *what,
                      us_session_state *out, us_err *err);

/* Where sessions live, for code that should not care: a directory in this
 * process (us_session_store_dir) or the owner shard rank of a distributed
 * job (coordinator/model/memory_dist.h). save/load have the contracts of
 * us_session_save/us_session_load. */
typedef struct us_session_store {
    void *ctx;
    int (*save)(void *ctx, us_session_state *s, us_err *err);
    int (*load)(void *ctx, const char *id, us_session_state *out, char *note,
                size_t note_bytes, us_err *err);
} us_session_store;

/* A store over the directory `dir` (borrowed: must outlive the store).
 * Returns: nothing; cannot fail.
 */
void us_session_store_dir(us_session_store *store, const char *dir);

#endif
