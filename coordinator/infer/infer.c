/* infer.c — continuous-batching decode loop: see infer.h. */
#include "coordinator/infer/infer.h"

#include <inttypes.h>

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator/infer/infer_session.h"

typedef struct slot {
    long     index;           /* prompt index; -1 = free */
    us_seq_state state;
    int32_t *prompt;          /* BOS + bytes */
    size_t   n_prompt, fed;
    int32_t *gen;
    size_t   n_gen, gen_cap;
    uint32_t max_tokens;
    us_rng   rng;
    int32_t *seg_tokens;      /* [L] tokens fed in the current segment */
    size_t   n_seg;
} slot;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The output line of a finished sequence; NULL on allocation failure. */
static char *output_line(const us_prompt *p, const slot *s, const char *finish,
                         uint64_t session_tokens)
{
    char *text = malloc(3 * s->n_gen + 1);
    uint8_t *bytes = malloc(s->n_gen + 1);
    cJSON *o = cJSON_CreateObject();
    char *line = NULL;
    if (text == NULL || bytes == NULL || o == NULL)
        goto done;
    for (size_t i = 0; i < s->n_gen; i++)
        bytes[i] = (uint8_t)s->gen[i];
    us_utf8_sanitize(text, bytes, s->n_gen);
    cJSON_AddStringToObject(o, "id", p->id);
    cJSON_AddStringToObject(o, "text", text);
    cJSON_AddItemToObject(o, "tokens", s->n_gen ? cJSON_CreateIntArray(s->gen, (int)s->n_gen)
                                                : cJSON_CreateArray());
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)s->n_prompt);
    cJSON_AddStringToObject(o, "finish", finish);
    if (p->session != NULL) {
        cJSON_AddStringToObject(o, "session", p->session);
        cJSON_AddNumberToObject(o, "session_tokens", (double)session_tokens);
    }
    line = cJSON_PrintUnformatted(o);
done:
    cJSON_Delete(o);
    free(bytes);
    free(text);
    return line;
}

static void session_key(char *out, size_t cap, const us_infer_opts *o, const us_prompt *p)
{
    snprintf(out, cap, "%016" PRIx64 "/%s", o->job_fingerprint, p->id);
}

static int finish_slot(us_journal *j, const us_prompt_set *set, slot *s, const char *finish,
                       const us_model_config *c, const us_infer_opts *o, us_infer_stats *st,
                       us_err *err)
{
    const us_prompt *p = &set->items[s->index];
    /* The session continues with the tokens of the unfinished segment plus
     * the last sampled token, which was never fed (none after EOS). */
    size_t unfed = strcmp(finish, "length") == 0 && s->n_gen > 0 ? 1 : 0;
    uint64_t session_tokens = s->state.tokens_seen + unfed;
    char *line = output_line(p, s, finish, session_tokens);
    if (line == NULL)
        return us_err_set(err, US_ENOMEM, "sequence \"%s\": out of memory for output", p->id);
    int rc = US_OK;
    if (p->session != NULL) {   /* state first: see infer_session.h on exactly-once */
        char key[US_PROMPT_ID_MAX + 32];
        session_key(key, sizeof key, o, p);
        if (unfed)
            s->seg_tokens[s->n_seg] = s->gen[s->n_gen - 1];   /* room: n_seg < L */
        rc = us_infer_session_save(o->sessions, p->session, key, c, &s->state,
                                   s->seg_tokens, s->n_seg + unfed, line, err);
    }
    if (rc == US_OK)
        rc = us_journal_finish(j, (size_t)s->index, line, err);
    cJSON_free(line);
    if (rc != US_OK)
        return us_err_prefix(err, "sequence \"%s\" (line %zu)", p->id, p->line);
    st->finished++;
    free(s->prompt);
    s->prompt = NULL;
    s->index = -1;
    return US_OK;
}

/* Prepares slot s for prompt p: fresh state (BOS + bytes) or, for a session,
 * its stored state (stored tail + bytes). *done_line is set (owned by the
 * caller) when the session already holds this very sequence's result. */
static int admit(slot *s, const us_model *m, const us_prompt *p, long index,
                 const us_infer_opts *o, char **done_line, us_err *err)
{
    us_session_resume r = {0};
    *done_line = NULL;
    us_seq_state_reset(&s->state, &m->cfg);
    if (p->session != NULL) {
        char key[US_PROMPT_ID_MAX + 32];
        session_key(key, sizeof key, o, p);
        int rc = us_infer_session_load(o->sessions, p->session, key, &m->cfg, &s->state,
                                       &r, err);
        if (rc != US_OK)
            return us_err_prefix(err, "line %zu", p->line);
        if (r.done_line != NULL) {
            *done_line = r.done_line;
            r.done_line = NULL;
            us_session_resume_free(&r);
            return US_OK;
        }
    }
    size_t head = r.found ? r.n_tail : 1;
    s->prompt = malloc((p->n_bytes + head) * sizeof(int32_t));
    if (s->prompt == NULL) {
        us_session_resume_free(&r);
        return us_err_set(err, US_ENOMEM, "sequence \"%s\": out of memory", p->id);
    }
    if (r.found)
        memcpy(s->prompt, r.tail, r.n_tail * sizeof(int32_t));
    else
        s->prompt[0] = US_TOKEN_BOS;
    for (size_t i = 0; i < p->n_bytes; i++)
        s->prompt[head + i] = p->bytes[i];
    s->n_prompt = p->n_bytes + head;
    s->fed = 0;
    s->n_gen = 0;
    s->n_seg = 0;
    s->max_tokens = p->max_tokens;
    s->index = index;
    us_rng_seed(&s->rng, o->seed, p->id);
    us_session_resume_free(&r);
    return US_OK;
}

static void progress(const us_infer_stats *st, double t0, bool final)
{
    double el = now_s() - t0;
    size_t todo = st->sequences - st->resumed, done = st->finished;
    double eta = done > 0 ? el / done * (todo - done) : 0.0;
    fprintf(stderr, "infer: %zu/%zu sequences done (%zu resumed), %.0f tokens/s generated, "
            "%.0f tokens/s total, %s %.0fs\n", st->resumed + done, st->sequences, st->resumed,
            el > 0 ? st->generated_tokens / el : 0.0,
            el > 0 ? (st->generated_tokens + st->prompt_tokens) / el : 0.0,
            final ? "elapsed" : "ETA", final ? el : eta);
}

int us_infer_run(const us_model *m, const us_prompt_set *set, us_journal *j,
                 const us_infer_opts *o, us_infer_stats *st, us_err *err)
{
    const us_model_config *c = &m->cfg;
    const size_t V = c->vocab_size, L = c->segment_len, B = o->batch_size;
    memset(st, 0, sizeof *st);
    st->sequences = set->count;
    st->resumed = j->n_resumed;
    if (B == 0 || o->batch_tokens < B)
        return us_err_set(err, US_EINVAL, "infer: need batch_size >= 1 and batch_tokens >= "
                          "batch_size (got %zu, %zu)", B, o->batch_tokens);
    int rc = US_OK;
    us_workspace ws = {0};
    slot *slots = calloc(B, sizeof *slots);
    us_batch_item *items = calloc(B, sizeof *items);
    size_t *item_slot = calloc(B, sizeof *item_slot);
    float *logits = malloc(B * V * sizeof(float));
    void *scratch = malloc(us_sampler_scratch_bytes(V));
    uint8_t allowed[US_VOCAB_SIZE];
    if (!slots || !items || !item_slot || !logits || !scratch) {
        rc = us_err_set(err, US_ENOMEM, "infer: out of memory for %zu slots", B);
        goto done;
    }
    for (size_t i = 0; i < B; i++)
        slots[i].index = -1;
    for (size_t i = 0; i < B; i++) {
        if ((rc = us_seq_state_init(&slots[i].state, c, err)) != US_OK)
            goto done;
        if ((slots[i].seg_tokens = malloc(L * sizeof(int32_t))) == NULL) {
            rc = us_err_set(err, US_ENOMEM, "infer: out of memory for %zu slots", B);
            goto done;
        }
    }
    if ((rc = us_workspace_init(&ws, c, o->batch_tokens, err)) != US_OK)
        goto done;
    st->state_bytes = B * us_seq_state_floats(c) * sizeof(float);
    st->workspace_bytes = ws.bytes;
    for (size_t t = 0; t < V; t++)
        allowed[t] = t != US_TOKEN_BOS && t != US_TOKEN_PAD;

    double t0 = now_s(), last_report = t0;
    size_t next = 0, active = 0;
    for (;;) {
        /* Admit waiting sequences into free slots (input order). A sequence
         * that needs no step (nothing to generate, or already applied to its
         * session) finishes at once and the slot takes the next one. */
        for (size_t i = 0; i < B; i++) {
            while (slots[i].index < 0 && next < set->count) {
                size_t idx = next++;
                if (us_journal_is_done(j, idx))
                    continue;
                const us_prompt *p = &set->items[idx];
                char *done_line = NULL;
                if ((rc = admit(&slots[i], m, p, (long)idx, o, &done_line, err)) != US_OK)
                    goto done;
                if (done_line != NULL) {   /* applied to its session before a crash */
                    rc = us_journal_finish(j, idx, done_line, err);
                    free(done_line);
                    if (rc != US_OK)
                        goto done;
                    st->finished++;
                } else if (slots[i].max_tokens == 0 && p->session == NULL) {
                    if ((rc = finish_slot(j, set, &slots[i], "length", c, o, st, err)) != US_OK)
                        goto done;
                } else {
                    active++;
                }
            }
        }
        if (active == 0)
            break;
        /* Decoding slots take 1 token each; prefilling slots share the rest. */
        size_t n_items = 0, budget = o->batch_tokens;
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < B; i++) {
                slot *s = &slots[i];
                bool decoding = s->index >= 0 && s->fed == s->n_prompt;
                bool prefilling = s->index >= 0 && s->fed < s->n_prompt;
                if (pass == 0 && decoding) {
                    items[n_items] = (us_batch_item){ &s->state, &s->gen[s->n_gen - 1], 1 };
                    item_slot[n_items++] = i;
                    budget--;
                } else if (pass == 1 && prefilling && budget > 0) {
                    size_t n = s->n_prompt - s->fed, room = L - s->state.seg_fill;
                    n = n < room ? n : room;
                    n = n < budget ? n : budget;
                    items[n_items] = (us_batch_item){ &s->state, s->prompt + s->fed,
                                                      (uint32_t)n };
                    item_slot[n_items++] = i;
                    budget -= n;
                }
            }
        if ((rc = us_model_forward(m, &ws, items, n_items, logits, true, err)) != US_OK)
            goto done;
        st->steps++;
        for (size_t k = 0; k < n_items; k++) {
            slot *s = &slots[item_slot[k]];
            /* Track the tokens of the current segment (a session's tail). */
            if (s->state.seg_fill == 0)
                s->n_seg = 0;
            else {
                memcpy(s->seg_tokens + s->n_seg, items[k].tokens,
                       items[k].n_tokens * sizeof(int32_t));
                s->n_seg += items[k].n_tokens;
            }
            if (s->fed < s->n_prompt) {
                s->fed += items[k].n_tokens;
                st->prompt_tokens += items[k].n_tokens;
                if (s->fed < s->n_prompt)
                    continue;   /* prompt not finished: no token yet */
                if (s->max_tokens == 0) {   /* session line that only feeds text */
                    if ((rc = finish_slot(j, set, s, "length", c, o, st, err)) != US_OK)
                        goto done;
                    active--;
                    continue;
                }
            }
            int tok = us_sample(logits + k * V, allowed, V, &o->sampling, &s->rng, scratch);
            const char *finish = NULL;
            if (tok < 0) {            /* every allowed logit NaN: a broken model */
                finish = "nan_logits";
            } else if (tok == US_TOKEN_EOS) {
                finish = "eos";
            } else {
                if (s->n_gen == s->gen_cap) {
                    size_t cap = s->gen_cap ? 2 * s->gen_cap : 64;
                    int32_t *g = realloc(s->gen, cap * sizeof *g);
                    if (g == NULL) {
                        rc = us_err_set(err, US_ENOMEM, "infer: out of memory");
                        goto done;
                    }
                    s->gen = g;
                    s->gen_cap = cap;
                }
                s->gen[s->n_gen++] = tok;
                st->generated_tokens++;
                if (s->n_gen >= s->max_tokens)
                    finish = "length";
            }
            if (finish != NULL) {
                if ((rc = finish_slot(j, set, s, finish, c, o, st, err)) != US_OK)
                    goto done;
                active--;
            }
        }
        if (o->progress && now_s() - last_report >= 1.0) {
            progress(st, t0, false);
            last_report = now_s();
        }
        if (o->step_delay_ms > 0) {
            struct timespec d = { o->step_delay_ms / 1000,
                                  (long)(o->step_delay_ms % 1000) * 1000000L };
            nanosleep(&d, NULL);
        }
    }
    st->seconds = now_s() - t0;
    if (o->progress)
        progress(st, t0, true);
done:
    for (size_t i = 0; slots && i < B; i++) {
        us_seq_state_free(&slots[i].state);
        free(slots[i].prompt);
        free(slots[i].gen);
        free(slots[i].seg_tokens);
    }
    us_workspace_free(&ws);
    free(slots);
    free(items);
    free(item_slot);
    free(logits);
    free(scratch);
    return rc;
}
