/* session.c — versioned, checksummed session state files (see session.h). */
#include "shard/session.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/hash.h"
#include "proto/placement.h"
#include "proto/ultrashard.pb-c.h"
#include "shard/crc32c.h"
#include "shard/durable.h"

#define SESSION_FORMAT_VERSION 1
/* Upper bound on one state file; far above any real model, it keeps a
 * corrupt length from driving a huge allocation. */
#define SESSION_MAX_FILE_BYTES (1ull << 34)

int us_session_check_id(const char *id, us_err *err)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > US_SESSION_ID_MAX)
        return us_err_set(err, US_EINVAL, "session id must have 1..%d characters, got %zu",
                          US_SESSION_ID_MAX, n);
    if (id[0] == '.')
        return us_err_set(err, US_EINVAL, "session id '%s' must not start with '.'", id);
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok)
            return us_err_set(err, US_EINVAL,
                              "session id '%.*s': character %zu (0x%02x) is not in [A-Za-z0-9._-]",
                              (int)n, id, i, (unsigned char)c);
    }
    return US_OK;
}

int us_session_owner(const char *id, uint64_t seed, int n_shards)
{
    return us_placement_shard(US_SESSION_TABLE_ID, us_fnv1a64_str(id), seed, n_shards);
}

static size_t memory_count(const us_session_state *s)
{
    return (size_t)s->layers * s->heads * s->d_key * s->d_value;
}

static size_t norm_count(const us_session_state *s)
{
    return (size_t)s->layers * s->heads * s->d_key;
}

int us_session_init(us_session_state *s, const char *id, uint32_t layers,
                    uint32_t heads, uint32_t d_key, uint32_t d_value, us_err *err)
{
    memset(s, 0, sizeof *s);
    int rc = us_session_check_id(id, err);
    if (rc != US_OK)
        return rc;
    if (layers == 0 || heads == 0 || d_key == 0 || d_value == 0)
        return us_err_set(err, US_EINVAL, "session '%s': zero dimension (%u layers, %u heads, "
                          "d_key %u, d_value %u)", id, layers, heads, d_key, d_value);
    strcpy(s->id, id);
    s->layers = layers;
    s->heads = heads;
    s->d_key = d_key;
    s->d_value = d_value;
    s->memory = calloc(memory_count(s), sizeof *s->memory);
    s->norm = calloc(norm_count(s), sizeof *s->norm);
    if (s->memory == NULL || s->norm == NULL) {
        us_session_free(s);
        return us_err_set(err, US_ENOMEM, "session '%s': state arrays", id);
    }
    return US_OK;
}

void us_session_free(us_session_state *s)
{
    free(s->memory);
    free(s->norm);
    free(s->extra);
    s->memory = s->norm = NULL;
    s->extra = NULL;
    s->extra_bytes = 0;
}

static uint32_t state_crc(const float *memory, size_t n_memory, const float *norm,
                          size_t n_norm, const uint8_t *extra, size_t extra_bytes)
{
    uint32_t crc = us_crc32c(0, memory, n_memory * sizeof *memory);
    crc = us_crc32c(crc, norm, n_norm * sizeof *norm);
    return extra_bytes ? us_crc32c(crc, extra, extra_bytes) : crc;
}

static int session_dir(char *out, size_t out_bytes, const char *dir, const char *id)
{
    int n = snprintf(out, out_bytes, "%s/sessions/%s", dir, id);
    return n > 0 && (size_t)n < out_bytes ? US_OK : US_EINVAL;
}

static int mkdir_p(const char *path, us_err *err)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n >= sizeof tmp)
        return us_err_set(err, US_EINVAL, "path too long: '%s'", path);
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return us_err_set(err, US_EIO, "mkdir '%s': %s", tmp, strerror(errno));
        tmp[i] = saved;
    }
    return US_OK;
}

/* Generations present in sdir, sorted descending. Returns count or < 0. */
static int list_generations(const char *sdir, uint64_t **gens_out, us_err *err)
{
    *gens_out = NULL;
    DIR *d = opendir(sdir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        return us_err_set(err, US_EIO, "open session directory '%s': %s", sdir, strerror(errno));
    }
    uint64_t *gens = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t g;
        char tail[8];
        /* only committed files: "gen-N.pb" exactly (temp files have a suffix) */
        if (sscanf(e->d_name, "gen-%20" SCNu64 ".p%7s", &g, tail) != 2 || strcmp(tail, "b") != 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            uint64_t *grown = realloc(gens, (size_t)cap * sizeof *gens);
            if (grown == NULL) {
                free(gens);
                closedir(d);
                return us_err_set(err, US_ENOMEM, "listing '%s'", sdir);
            }
            gens = grown;
        }
        gens[n++] = g;
    }
    closedir(d);
    for (int i = 1; i < n; i++)             /* insertion sort, descending: n is tiny */
        for (int j = i; j > 0 && gens[j] > gens[j - 1]; j--) {
            uint64_t t = gens[j];
            gens[j] = gens[j - 1];
            gens[j - 1] = t;
        }
    *gens_out = gens;
    return n;
}

static void gen_path(char *out, size_t out_bytes, const char *sdir, uint64_t g)
{
    snprintf(out, out_bytes, "%s/gen-%020" PRIu64 ".pb", sdir, g);
}

int us_session_pack(const us_session_state *s, uint64_t generation, uint8_t **out,
                    size_t *out_bytes, us_err *err)
{
    Ultrashard__SessionState msg = ULTRASHARD__SESSION_STATE__INIT;
    msg.version = SESSION_FORMAT_VERSION;
    msg.session_id = (char *)s->id;
    msg.generation = generation;
    msg.tokens_seen = s->tokens_seen;
    msg.layers = s->layers;
    msg.heads = s->heads;
    msg.d_key = s->d_key;
    msg.d_value = s->d_value;
    msg.n_memory = memory_count(s);
    msg.memory = s->memory;
    msg.n_norm = norm_count(s);
    msg.norm = s->norm;
    msg.extra.len = s->extra_bytes;
    msg.extra.data = s->extra;
    msg.crc32c = state_crc(s->memory, msg.n_memory, s->norm, msg.n_norm,
                           s->extra, s->extra_bytes);
    size_t bytes = ultrashard__session_state__get_packed_size(&msg);
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (buf == NULL)
        return us_err_set(err, US_ENOMEM, "session '%s': %zu-byte state", s->id, bytes);
    ultrashard__session_state__pack(&msg, buf);
    *out = buf;
    *out_bytes = bytes;
    return US_OK;
}

int us_session_save(const char *dir, us_session_state *s, us_err *err)
{
    int rc = us_session_check_id(s->id, err);
    if (rc != US_OK)
        return rc;
    char sdir[4096], path[4200];
    if (session_dir(sdir, sizeof sdir, dir, s->id) != US_OK)
        return us_err_set(err, US_EINVAL, "store path too long: '%s'", dir);
    if ((rc = mkdir_p(sdir, err)) != US_OK)
        return us_err_prefix(err, "session '%s'", s->id);

    uint64_t *gens = NULL;
    int n_gens = list_generations(sdir, &gens, err);
    if (n_gens < 0)
        return n_gens;
    uint64_t next = n_gens > 0 ? gens[0] + 1 : 1;
    if (s->generation >= next)               /* never reuse a number */
        next = s->generation + 1;

    uint8_t *buf = NULL;
    size_t bytes = 0;
    if ((rc = us_session_pack(s, next, &buf, &bytes, err)) != US_OK) {
        free(gens);
        return rc;
    }

    gen_path(path, sizeof path, sdir, next);
    us_durable_file f;
    if ((rc = us_durable_open(&f, path, false, err)) != US_OK)
        goto done;
    if ((rc = us_durable_write(&f, buf, bytes, err)) != US_OK) {
        us_durable_abort(&f);
        goto done;
    }
    if ((rc = us_durable_commit(&f, err)) != US_OK)
        goto done;
    s->generation = next;
    /* Keep the new and the previous generation; older ones may go. */
    for (int i = 1; i < n_gens; i++) {   /* gens[0] is now the previous one */
        char old[4200];
        gen_path(old, sizeof old, sdir, gens[i]);
        unlink(old);
    }
done:
    if (rc != US_OK)
        us_err_prefix(err, "saving session '%s'", s->id);
    free(buf);
    free(gens);
    return rc;
}

int us_session_unpack(const uint8_t *data, size_t bytes, const char *id, const char *what,
                      us_session_state *out, us_err *err)
{
    Ultrashard__SessionState *msg = ultrashard__session_state__unpack(NULL, bytes, data);
    if (msg == NULL)
        return us_err_set(err, US_ECORRUPT, "%s: not a valid SessionState (truncated or "
                          "corrupt)", what);
    us_session_state s = {0};
    int rc = US_OK;
    if (msg->version > SESSION_FORMAT_VERSION) {
        rc = us_err_set(err, US_EVERSION, "%s: session format version %u is newer than "
                        "this build (%d)", what, msg->version, SESSION_FORMAT_VERSION);
        goto done;
    }
    if (msg->session_id == NULL || strcmp(msg->session_id, id) != 0) {
        rc = us_err_set(err, US_ECORRUPT, "%s: holds session '%s', expected '%s'", what,
                        msg->session_id ? msg->session_id : "", id);
        goto done;
    }
    s.layers = msg->layers;
    s.heads = msg->heads;
    s.d_key = msg->d_key;
    s.d_value = msg->d_value;
    if (msg->n_memory != memory_count(&s) || msg->n_norm != norm_count(&s) ||
        msg->n_memory == 0) {
        rc = us_err_set(err, US_ECORRUPT, "%s: %zu memory and %zu norm values do not match "
                        "shape %u x %u x %u x %u", what, msg->n_memory, msg->n_norm,
                        s.layers, s.heads, s.d_key, s.d_value);
        goto done;
    }
    uint32_t crc = state_crc(msg->memory, msg->n_memory, msg->norm, msg->n_norm,
                             msg->extra.data, msg->extra.len);
    if (crc != msg->crc32c) {
        rc = us_err_set(err, US_ECORRUPT, "%s: checksum mismatch (stored %08x, computed "
                        "%08x)", what, msg->crc32c, crc);
        goto done;
    }
    if ((rc = us_session_init(&s, id, s.layers, s.heads, s.d_key, s.d_value, err)) != US_OK)
        goto done;
    memcpy(s.memory, msg->memory, msg->n_memory * sizeof *s.memory);
    memcpy(s.norm, msg->norm, msg->n_norm * sizeof *s.norm);
    if (msg->extra.len > 0) {
        s.extra = malloc(msg->extra.len);
        if (s.extra == NULL) {
            us_session_free(&s);
            rc = us_err_set(err, US_ENOMEM, "%s: extra bytes", what);
            goto done;
        }
        memcpy(s.extra, msg->extra.data, msg->extra.len);
        s.extra_bytes = msg->extra.len;
    }
    s.generation = msg->generation;
    s.tokens_seen = msg->tokens_seen;
    *out = s;
done:
    ultrashard__session_state__free_unpacked(msg, NULL);
    return rc;
}

static int load_generation(const char *path, const char *id, us_session_state *out,
                           us_err *err)
{
    char *data = NULL;
    size_t bytes = 0;
    int rc = us_read_file(path, SESSION_MAX_FILE_BYTES, "session state", &data, &bytes, err);
    if (rc == US_EINVAL) {      /* implausibly large: damaged, like a bad checksum */
        if (err != NULL)
            err->code = US_ECORRUPT;
        rc = US_ECORRUPT;
    }
    if (rc != US_OK)
        return rc;
    rc = us_session_unpack((const uint8_t *)data, bytes, id, path, out, err);
    free(data);
    return rc;
}

int us_session_load(const char *dir, const char *id, us_session_state *out,
                    char *note, size_t note_bytes, us_err *err)
{
    if (note && note_bytes)
        note[0] = '\0';
    int rc = us_session_check_id(id, err);
    if (rc != US_OK)
        return rc;
    char sdir[4096], path[4200];
    if (session_dir(sdir, sizeof sdir, dir, id) != US_OK)
        return us_err_set(err, US_EINVAL, "store path too long: '%s'", dir);
    uint64_t *gens = NULL;
    int n = list_generations(sdir, &gens, err);
    if (n < 0)
        return n;
    if (n == 0) {
        free(gens);
        return us_err_set(err, US_ENOTFOUND, "session '%s' has no saved state under '%s'",
                          id, sdir);
    }
    us_err first = {0};
    rc = US_ECORRUPT;
    for (int i = 0; i < n; i++) {
        us_err this_err = {0};
        gen_path(path, sizeof path, sdir, gens[i]);
        rc = load_generation(path, id, out, &this_err);
        if (rc == US_OK) {
            if (i > 0 && note && note_bytes)
                snprintf(note, note_bytes, "skipped damaged newer generation: %s", first.msg);
            break;
        }
        if (i == 0)
            first = this_err;
        if (rc != US_ECORRUPT)       /* I/O or version errors are not "damaged": stop */
            break;
    }
    free(gens);
    if (rc != US_OK) {
        if (err) {
            *err = first;
            err->code = rc == US_ECORRUPT ? US_ECORRUPT : first.code;
        }
        return us_err_prefix(err, "loading session '%s'", id);
    }
    return US_OK;
}

int us_session_check_shape(const us_session_state *s, uint32_t layers, uint32_t heads,
                           uint32_t d_key, uint32_t d_value, us_err *err)
{
    if (s->layers != layers || s->heads != heads || s->d_key != d_key || s->d_value != d_value)
        return us_err_set(err, US_EINVAL, "session '%s' has shape %u layers x %u heads x "
                          "d_key %u x d_value %u; the model needs %u x %u x %u x %u",
                          s->id, s->layers, s->heads, s->d_key, s->d_value,
                          layers, heads, d_key, d_value);
    return US_OK;
}

/* The local-directory session store: ctx is the directory name. */
static int dir_save(void *ctx, us_session_state *s, us_err *err)
{
    return us_session_save(ctx, s, err);
}

static int dir_load(void *ctx, const char *id, us_session_state *out, char *note,
                    size_t note_bytes, us_err *err)
{
    return us_session_load(ctx, id, out, note, note_bytes, err);
}

void us_session_store_dir(us_session_store *store, const char *dir)
{
    store->ctx = (void *)dir;   /* borrowed; never written through */
    store->save = dir_save;
    store->load = dir_load;
}
