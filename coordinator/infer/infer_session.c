/* infer_session.c — load/save of session states around a sequence: see infer_session.h. */
#include "coordinator/infer/infer_session.h"

#include <stdlib.h>
#include <string.h>

#include "shard/session.h"

#define EXTRA_MAGIC 0x31535355u   /* "USS1" */

void us_session_resume_free(us_session_resume *r)
{
    free(r->tail);
    free(r->done_line);
    memset(r, 0, sizeof *r);
}

static void put_u32(uint8_t **p, uint32_t v)
{
    memcpy(*p, &v, 4);   /* x86-64 and every target we build for are little-endian */
    *p += 4;
}

static int get_u32(const uint8_t **p, const uint8_t *end, uint32_t *v)
{
    if (end - *p < 4)
        return -1;
    memcpy(v, *p, 4);
    *p += 4;
    return 0;
}

int us_infer_session_load(const us_session_store *store, const char *sid, const char *key,
                          const us_model_config *c, us_seq_state *state,
                          us_session_resume *r, us_err *err)
{
    memset(r, 0, sizeof *r);
    us_seq_state_reset(state, c);
    us_session_state s;
    char note[256] = "";
    int rc = store->load(store->ctx, sid, &s, note, sizeof note, err);
    if (rc == US_ENOTFOUND) {
        us_err_clear(err);
        return US_OK;
    }
    if (rc != US_OK)
        return us_err_prefix(err, "session \"%s\"", sid);
    const size_t H = c->n_heads, dh = c->head_dim;
    if ((rc = us_session_check_shape(&s, c->n_layers, (uint32_t)H, (uint32_t)dh, (uint32_t)dh,
                                     err)) != US_OK) {
        us_session_free(&s);
        return us_err_prefix(err, "session \"%s\" does not fit this model", sid);
    }
    const uint8_t *p = s.extra, *end = s.extra + s.extra_bytes;
    uint32_t magic = 0, n_tail = 0, key_len = 0, line_len = 0;
    if (get_u32(&p, end, &magic) || magic != EXTRA_MAGIC || get_u32(&p, end, &n_tail) ||
        n_tail >= c->segment_len + 2 || (size_t)(end - p) < n_tail * 4ull)
        goto corrupt;
    r->tail = malloc((n_tail + 1) * sizeof(int32_t));
    if (r->tail == NULL)
        goto nomem;
    memcpy(r->tail, p, n_tail * 4ull);
    p += n_tail * 4ull;
    for (uint32_t i = 0; i < n_tail; i++)
        if (r->tail[i] < 0 || (uint32_t)r->tail[i] >= c->vocab_size)
            goto corrupt;
    r->n_tail = n_tail;
    if (get_u32(&p, end, &key_len) || (size_t)(end - p) < key_len)
        goto corrupt;
    const uint8_t *stored_key = p;
    p += key_len;
    if (get_u32(&p, end, &line_len) || (size_t)(end - p) != line_len)
        goto corrupt;
    if (key_len == strlen(key) && memcmp(stored_key, key, key_len) == 0) {
        r->done_line = malloc(line_len + 1);
        if (r->done_line == NULL)
            goto nomem;
        memcpy(r->done_line, p, line_len);
        r->done_line[line_len] = '\0';
    }
    memcpy(state->mem, s.memory, c->n_layers * H * dh * dh * sizeof(float));
    memcpy(state->mem_norm, s.norm, c->n_layers * H * dh * sizeof(float));
    state->tokens_seen = s.tokens_seen - n_tail;   /* the tail is fed again */
    r->tokens_seen = s.tokens_seen;
    r->found = true;
    us_session_free(&s);
    return US_OK;
corrupt:
    us_session_free(&s);
    us_session_resume_free(r);
    return us_err_set(err, US_ECORRUPT, "session \"%s\" (generation %llu): malformed model "
                      "bytes (extra)", sid, (unsigned long long)s.generation);
nomem:
    us_session_free(&s);
    us_session_resume_free(r);
    return us_err_set(err, US_ENOMEM, "session \"%s\": out of memory", sid);
}

int us_infer_session_save(const us_session_store *store, const us_model_config *c,
                          const us_session_update *u, us_err *err)
{
    const char *sid = u->sid, *key = u->key, *line = u->line;
    const us_seq_state *state = u->state;
    const int32_t *tail = u->tail;
    const size_t n_tail = u->n_tail;
    const size_t H = c->n_heads, dh = c->head_dim;
    us_session_state s;
    int rc = us_session_init(&s, sid, c->n_layers, (uint32_t)H, (uint32_t)dh, (uint32_t)dh,
                             err);
    if (rc != US_OK)
        return rc;
    memcpy(s.memory, state->mem, c->n_layers * H * dh * dh * sizeof(float));
    memcpy(s.norm, state->mem_norm, c->n_layers * H * dh * sizeof(float));
    /* tokens_seen counts what was fed; the unfed tail tokens are part of the
     * session too (the last sampled token is never fed in this job). */
    size_t fed_tail = state->seg_fill;
    s.tokens_seen = state->tokens_seen + (n_tail - fed_tail);
    size_t key_len = strlen(key), line_len = strlen(line);
    s.extra_bytes = 16 + n_tail * 4 + key_len + line_len;
    s.extra = malloc(s.extra_bytes);
    if (s.extra == NULL) {
        us_session_free(&s);
        return us_err_set(err, US_ENOMEM, "session \"%s\": out of memory", sid);
    }
    uint8_t *p = s.extra;
    put_u32(&p, EXTRA_MAGIC);
    put_u32(&p, (uint32_t)n_tail);
    memcpy(p, tail, n_tail * 4);
    p += n_tail * 4;
    put_u32(&p, (uint32_t)key_len);
    memcpy(p, key, key_len);
    p += key_len;
    put_u32(&p, (uint32_t)line_len);
    memcpy(p, line, line_len);
    rc = store->save(store->ctx, &s, err);
    us_session_free(&s);
    return rc == US_OK ? US_OK : us_err_prefix(err, "session \"%s\"", sid);
}
