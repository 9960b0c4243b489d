/* infer.c — continuous-batching decode loop: see infer.h. */
#include "coordinator/infer.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
    long     index;           /* prompt index; -1 = free */
    us_seq_state state;
    int32_t *prompt;          /* BOS + bytes */
    size_t   n_prompt, fed;
    int32_t *gen;
    size_t   n_gen, gen_cap;
    uint32_t max_tokens;
    us_rng   rng;
} slot;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The output line of a finished sequence; NULL on allocation failure. */
static char *output_line(const us_prompt *p, const slot *s, const char *finish)
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
    cJSON_AddItemToObject(o, "tokens", cJSON_CreateIntArray(s->gen, (int)s->n_gen));
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)s->n_prompt);
    cJSON_AddStringToObject(o, "finish", finish);
    line = cJSON_PrintUnformatted(o);
done:
    cJSON_Delete(o);
    free(bytes);
    free(text);
    return line;
}

static int finish_slot(us_journal *j, const us_prompt_set *set, slot *s, const char *finish,
                       us_infer_stats *st, us_err *err)
{
    const us_prompt *p = &set->items[s->index];
    char *line = output_line(p, s, finish);
    if (line == NULL)
        return us_err_set(err, US_ENOMEM, "sequence \"%s\": out of memory for output", p->id);
    int rc = us_journal_finish(j, (size_t)s->index, line, err);
    cJSON_free(line);
    if (rc != US_OK)
        return us_err_prefix(err, "sequence \"%s\" (line %zu)", p->id, p->line);
    st->finished++;
    free(s->prompt);
    s->prompt = NULL;
    s->index = -1;
    return US_OK;
}

static int admit(slot *s, const us_model *m, const us_prompt *p, long index, uint64_t seed,
                 us_err *err)
{
    s->prompt = malloc((p->n_bytes + 1) * sizeof(int32_t));
    if (s->prompt == NULL)
        return us_err_set(err, US_ENOMEM, "sequence \"%s\": out of memory", p->id);
    s->prompt[0] = US_TOKEN_BOS;
    for (size_t i = 0; i < p->n_bytes; i++)
        s->prompt[i + 1] = p->bytes[i];
    s->n_prompt = p->n_bytes + 1;
    s->fed = 0;
    s->n_gen = 0;
    s->max_tokens = p->max_tokens;
    s->index = index;
    us_rng_seed(&s->rng, seed, p->id);
    us_seq_state_reset(&s->state, &m->cfg);
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
    for (size_t i = 0; i < B; i++)
        if ((rc = us_seq_state_init(&slots[i].state, c, err)) != US_OK)
            goto done;
    if ((rc = us_workspace_init(&ws, c, o->batch_tokens, err)) != US_OK)
        goto done;
    st->state_bytes = B * us_seq_state_floats(c) * sizeof(float);
    st->workspace_bytes = ws.bytes;
    for (size_t t = 0; t < V; t++)
        allowed[t] = t != US_TOKEN_BOS && t != US_TOKEN_PAD;

    double t0 = now_s(), last_report = t0;
    size_t next = 0, active = 0;
    for (;;) {
        /* Admit waiting sequences into free slots (input order). */
        for (size_t i = 0; i < B && next < set->count; i++) {
            if (slots[i].index >= 0)
                continue;
            while (next < set->count && us_journal_is_done(j, next))
                next++;
            if (next == set->count)
                break;
            if ((rc = admit(&slots[i], m, &set->items[next], (long)next, o->seed, err)))
                goto done;
            next++;
            active++;
            if (slots[i].max_tokens == 0) {   /* nothing to generate */
                if ((rc = finish_slot(j, set, &slots[i], "length", st, err)) != US_OK)
                    goto done;
                active--;
                i--;   /* refill this slot */
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
            if (s->fed < s->n_prompt) {
                s->fed += items[k].n_tokens;
                st->prompt_tokens += items[k].n_tokens;
                if (s->fed < s->n_prompt)
                    continue;   /* prompt not finished: no token yet */
            }
            int tok = us_sample(logits + k * V, allowed, V, &o->sampling, &s->rng, scratch);
            const char *finish = NULL;
            if (tok < 0 || tok == US_TOKEN_EOS) {
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
                if ((rc = finish_slot(j, set, s, finish, st, err)) != US_OK)
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
    }
    us_workspace_free(&ws);
    free(slots);
    free(items);
    free(item_slot);
    free(logits);
    free(scratch);
    return rc;
}
