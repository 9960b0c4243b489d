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

/* Everything one us_infer_run owns: slots, the step's batch and its logits. */
typedef struct infer_run {
    const us_model *m;
    const us_prompt_set *set;
    const us_infer_sink *sink;
    const us_infer_opts *o;
    us_infer_stats *st;
    size_t B, V, L;
    slot *slots;
    us_batch_item *items;     /* [B] this step's batch */
    size_t *item_slot;        /* [B] slot of each item */
    size_t n_items;
    float *logits;            /* [B x V] */
    void *scratch;            /* sampler scratch */
    us_workspace ws;
    uint8_t allowed[US_VOCAB_SIZE];
    size_t next, active;      /* next prompt to admit, slots decoding */
} infer_run;

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

static int finish_slot(infer_run *r, slot *s, const char *finish, us_err *err)
{
    const us_infer_opts *o = r->o;
    const us_prompt *p = &r->set->items[s->index];
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
        us_session_update u = { .sid = p->session, .key = key, .state = &s->state,
                                .tail = s->seg_tokens, .n_tail = s->n_seg + unfed,
                                .line = line };
        rc = us_infer_session_save(o->sessions, &r->m->cfg, &u, err);
    }
    if (rc == US_OK)
        rc = r->sink->finish(r->sink->ctx, (size_t)s->index, line, err);
    cJSON_free(line);
    if (rc != US_OK)
        return us_err_prefix(err, "sequence \"%s\" (line %zu)", p->id, p->line);
    r->st->finished++;
    free(s->prompt);
    s->prompt = NULL;
    s->index = -1;
    return US_OK;
}

/* Prepares slot s for prompt p: fresh state (BOS + bytes) or, for a session,
 * its stored state (stored tail + bytes). *done_line is set (owned by the
 * caller) when the session already holds this very sequence's result. */
static int admit(const infer_run *run, slot *s, long index, char **done_line, us_err *err)
{
    const us_model *m = run->m;
    const us_infer_opts *o = run->o;
    const us_prompt *p = &run->set->items[index];
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

static int run_init(infer_run *r, us_err *err)
{
    const us_model_config *c = &r->m->cfg;
    const size_t B = r->B;
    r->slots = calloc(B, sizeof *r->slots);
    r->items = calloc(B, sizeof *r->items);
    r->item_slot = calloc(B, sizeof *r->item_slot);
    r->logits = malloc(B * r->V * sizeof(float));
    r->scratch = malloc(us_sampler_scratch_bytes(r->V));
    if (!r->slots || !r->items || !r->item_slot || !r->logits || !r->scratch)
        return us_err_set(err, US_ENOMEM, "infer: out of memory for %zu slots", B);
    for (size_t i = 0; i < B; i++)
        r->slots[i].index = -1;
    for (size_t i = 0; i < B; i++) {
        int rc = us_seq_state_init(&r->slots[i].state, c, err);
        if (rc != US_OK)
            return rc;
        if ((r->slots[i].seg_tokens = malloc(r->L * sizeof(int32_t))) == NULL)
            return us_err_set(err, US_ENOMEM, "infer: out of memory for %zu slots", B);
    }
    int rc = us_workspace_init(&r->ws, c, r->o->batch_tokens, err);
    if (rc != US_OK)
        return rc;
    r->st->state_bytes = B * us_seq_state_floats(c) * sizeof(float);
    r->st->workspace_bytes = r->ws.bytes;
    for (size_t t = 0; t < r->V; t++)
        r->allowed[t] = t != US_TOKEN_BOS && t != US_TOKEN_PAD;
    return US_OK;
}

static void run_free(infer_run *r)
{
    for (size_t i = 0; r->slots && i < r->B; i++) {
        us_seq_state_free(&r->slots[i].state);
        free(r->slots[i].prompt);
        free(r->slots[i].gen);
        free(r->slots[i].seg_tokens);
    }
    us_workspace_free(&r->ws);
    free(r->slots);
    free(r->items);
    free(r->item_slot);
    free(r->logits);
    free(r->scratch);
}

/* Admits waiting sequences into free slots (input order). A sequence that
 * needs no step (nothing to generate, or already applied to its session)
 * finishes at once and the slot takes the next one. */
static int admit_waiting(infer_run *r, us_err *err)
{
    for (size_t i = 0; i < r->B; i++) {
        slot *s = &r->slots[i];
        while (s->index < 0 && r->next < r->set->count) {
            size_t idx = r->next++;
            if ((r->o->part_count > 0 && idx % r->o->part_count != r->o->part_index) ||
                r->sink->is_done(r->sink->ctx, idx))
                continue;
            const us_prompt *p = &r->set->items[idx];
            char *done_line = NULL;
            int rc = admit(r, s, (long)idx, &done_line, err);
            if (rc != US_OK)
                return rc;
            if (done_line != NULL) {   /* applied to its session before a crash */
                rc = r->sink->finish(r->sink->ctx, idx, done_line, err);
                free(done_line);
                if (rc != US_OK)
                    return rc;
                r->st->finished++;
            } else if (s->max_tokens == 0 && p->session == NULL) {
                rc = finish_slot(r, s, "length", err);
                if (rc != US_OK)
                    return rc;
            } else {
                r->active++;
            }
        }
    }
    return US_OK;
}

/* Composes this step's batch: decoding slots take 1 token each first, so
 * prefill never starves them; prefilling slots share the rest of the budget,
 * each up to the end of its current segment. */
static void compose_step(infer_run *r)
{
    size_t budget = r->o->batch_tokens;
    r->n_items = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < r->B; i++) {
            slot *s = &r->slots[i];
            bool decoding = s->index >= 0 && s->fed == s->n_prompt;
            bool prefilling = s->index >= 0 && s->fed < s->n_prompt;
            if (pass == 0 && decoding) {
                r->items[r->n_items] = (us_batch_item){ &s->state, &s->gen[s->n_gen - 1], 1 };
                r->item_slot[r->n_items++] = i;
                budget--;
            } else if (pass == 1 && prefilling && budget > 0) {
                size_t n = s->n_prompt - s->fed, room = r->L - s->state.seg_fill;
                n = n < room ? n : room;
                n = n < budget ? n : budget;
                r->items[r->n_items] = (us_batch_item){ &s->state, s->prompt + s->fed,
                                                        (uint32_t)n };
                r->item_slot[r->n_items++] = i;
                budget -= n;
            }
        }
}

/* Appends tok to the slot's generated tokens; sets *finish to "length" when
 * the sequence reached its max_tokens. */
static int append_token(infer_run *r, slot *s, int tok, const char **finish, us_err *err)
{
    if (s->n_gen == s->gen_cap) {
        size_t cap = s->gen_cap ? 2 * s->gen_cap : 64;
        int32_t *g = realloc(s->gen, cap * sizeof *g);
        if (g == NULL)
            return us_err_set(err, US_ENOMEM, "infer: out of memory");
        s->gen = g;
        s->gen_cap = cap;
    }
    s->gen[s->n_gen++] = tok;
    r->st->generated_tokens++;
    if (s->n_gen >= s->max_tokens)
        *finish = "length";
    return US_OK;
}

/* Takes the step's result for batch item k: advances its prompt or samples
 * its next token, and retires the sequence when it is finished. */
static int retire_item(infer_run *r, size_t k, us_err *err)
{
    const us_batch_item *it = &r->items[k];
    slot *s = &r->slots[r->item_slot[k]];
    /* Track the tokens of the current segment (a session's tail). */
    if (s->state.seg_fill == 0)
        s->n_seg = 0;
    else {
        memcpy(s->seg_tokens + s->n_seg, it->tokens, it->n_tokens * sizeof(int32_t));
        s->n_seg += it->n_tokens;
    }
    const char *finish = NULL;
    if (s->fed < s->n_prompt) {
        s->fed += it->n_tokens;
        r->st->prompt_tokens += it->n_tokens;
        if (s->fed < s->n_prompt)
            return US_OK;   /* prompt not finished: no token yet */
        if (s->max_tokens == 0)   /* session line that only feeds text */
            finish = "length";
    }
    if (finish == NULL) {
        int tok = us_sample(r->logits + k * r->V, r->allowed, r->V, &r->o->sampling, &s->rng,
                            r->scratch);
        if (tok < 0)              /* every allowed logit NaN: a broken model */
            finish = "nan_logits";
        else if (tok == US_TOKEN_EOS)
            finish = "eos";
        else {
            int rc = append_token(r, s, tok, &finish, err);
            if (rc != US_OK)
                return rc;
        }
    }
    if (finish == NULL)
        return US_OK;
    int rc = finish_slot(r, s, finish, err);
    if (rc != US_OK)
        return rc;
    r->active--;
    return US_OK;
}

static void pace(const us_infer_opts *o)
{
    if (o->step_delay_ms > 0) {
        struct timespec d = { o->step_delay_ms / 1000,
                              (long)(o->step_delay_ms % 1000) * 1000000L };
        nanosleep(&d, NULL);
    }
}

static int journal_is_done(void *ctx, size_t index)
{
    return us_journal_is_done(ctx, index);
}

static int journal_finish(void *ctx, size_t index, const char *line, us_err *err)
{
    return us_journal_finish(ctx, index, line, err);
}

void us_infer_journal_sink(us_journal *j, us_infer_sink *sink)
{
    *sink = (us_infer_sink){ .ctx = j, .is_done = journal_is_done, .finish = journal_finish };
}

/* Sequences finished elsewhere (other coordinators) count as finished here. */
static int poll_sink(infer_run *r, us_err *err)
{
    size_t taken = 0;
    if (r->sink->poll == NULL)
        return US_OK;
    int rc = r->sink->poll(r->sink->ctx, &taken, err);
    r->st->finished += taken;
    return rc;
}

int us_infer_run(const us_model *m, const us_prompt_set *set, const us_infer_sink *sink,
                 const us_infer_opts *o, us_infer_stats *st, us_err *err)
{
    infer_run r = { .m = m, .set = set, .sink = sink, .o = o, .st = st, .B = o->batch_size,
                    .V = m->cfg.vocab_size, .L = m->cfg.segment_len };
    memset(st, 0, sizeof *st);
    st->sequences = set->count;
    for (size_t i = 0; i < set->count; i++)
        st->resumed += sink->is_done(sink->ctx, i) != 0;
    if (r.B == 0 || o->batch_tokens < r.B)
        return us_err_set(err, US_EINVAL, "infer: need batch_size >= 1 and batch_tokens >= "
                          "batch_size (got %zu, %zu)", r.B, o->batch_tokens);
    if (o->part_count > 0 && o->part_index >= o->part_count)
        return us_err_set(err, US_EINVAL, "infer: part %zu of %zu does not exist",
                          o->part_index, o->part_count);
    int rc = run_init(&r, err);
    double t0 = now_s(), last_report = t0;
    while (rc == US_OK) {
        if ((rc = admit_waiting(&r, err)) != US_OK || r.active == 0)
            break;
        compose_step(&r);
        rc = us_model_forward(m, &r.ws, r.items, r.n_items, r.logits, true, err);
        if (rc != US_OK)
            break;
        st->steps++;
        for (size_t k = 0; k < r.n_items && rc == US_OK; k++)
            rc = retire_item(&r, k, err);
        if (rc == US_OK)
            rc = poll_sink(&r, err);
        if (rc == US_OK && o->progress && now_s() - last_report >= 1.0) {
            progress(st, t0, false);
            last_report = now_s();
        }
        if (rc == US_OK)
            pace(o);
    }
    if (rc == US_OK) {
        st->seconds = now_s() - t0;
        if (o->progress)
            progress(st, t0, true);
    }
    run_free(&r);
    return rc;
}
