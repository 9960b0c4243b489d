/* infer.c — continuous-batching decode loop: see infer.h. */
#include "coordinator/infer/infer.h"

#include <inttypes.h>

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator/infer/infer_session.h"
#include "kernels/stats.h"

typedef struct slot {
    long     index;           /* prompt index; -1 = free */
    const us_prompt *p;       /* the prompt (the set's, or a stream's: borrowed) */
    uint64_t tag;             /* streams: the caller's name of the sequence */
    us_sampler_params sampling;
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
    const us_infer_stream_ops *stream;   /* NULL: a batch job (set + sink) */
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
    /* For the ETA: work of the sequences not yet admitted (prompt tokens
     * with BOS, max_tokens), and step time split between prefill and
     * decoding by their shares of each step's tokens. */
    uint64_t wait_prompt, wait_gen;
    double prefill_s, decode_s, step_end_s;
} infer_run;

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

/* A stream's sequence ends: its caller hears of it, nothing is recorded. */
static int finish_stream_slot(infer_run *r, slot *s, const char *finish, us_err *err)
{
    int rc = r->stream->finish(r->stream->ctx, s->tag, finish, s->n_prompt, s->n_gen, err);
    r->st->finished++;
    s->prompt = (free(s->prompt), NULL);
    s->index = -1;
    return rc;
}

static int finish_slot(infer_run *r, slot *s, const char *finish, us_err *err)
{
    const us_infer_opts *o = r->o;
    const us_prompt *p = s->p;
    if (r->stream != NULL)
        return finish_stream_slot(r, s, finish, err);
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
static int admit(const infer_run *run, slot *s, const us_prompt *p, long index,
                 char **done_line, us_err *err)
{
    const us_model *m = run->m;
    const us_infer_opts *o = run->o;
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
    s->p = p;
    s->sampling = o->sampling;
    us_rng_seed(&s->rng, o->seed, p->id);
    us_session_resume_free(&r);
    return US_OK;
}

/* Prompt tokens still to feed and tokens still to generate (max_tokens:
 * an upper bound, EOS may come first) of every unfinished sequence. */
static void work_left(const infer_run *r, uint64_t *prompt, uint64_t *gen)
{
    *prompt = r->wait_prompt;
    *gen = r->wait_gen;
    for (size_t i = 0; i < r->B; i++) {
        const slot *s = &r->slots[i];
        if (s->index < 0)
            continue;
        *prompt += s->n_prompt - s->fed;
        *gen += s->max_tokens > s->n_gen ? s->max_tokens - s->n_gen : 0;
    }
}

/* Seconds left at the measured prefill and decode rates; a rate not seen
 * yet (no token of that kind) is taken as the overall token rate. */
static double eta_s(const infer_run *r, double elapsed_s)
{
    const us_infer_stats *st = r->st;
    const double pt = (double)st->prompt_tokens, gt = (double)st->generated_tokens;
    if (elapsed_s <= 0 || pt + gt == 0)
        return 0.0;
    const double any = (pt + gt) / elapsed_s;
    const double prefill = pt > 0 && r->prefill_s > 0 ? pt / r->prefill_s : any;
    const double decode = gt > 0 && r->decode_s > 0 ? gt / r->decode_s : any;
    uint64_t prompt_left, gen_left;
    work_left(r, &prompt_left, &gen_left);
    return (double)prompt_left / prefill + (double)gen_left / decode;
}

static void progress(const infer_run *r, double t0, bool final)
{
    const us_infer_stats *st = r->st;
    double el = us_now_s() - t0;
    fprintf(stderr, "infer: %zu/%zu sequences done (%zu resumed), %.0f tokens/s generated, "
            "%.0f prompt tokens/s, %.0f tokens/s total, %s %.0fs\n", st->resumed + st->finished,
            st->sequences, st->resumed, el > 0 ? st->generated_tokens / el : 0.0,
            el > 0 ? st->prompt_tokens / el : 0.0,
            el > 0 ? (st->generated_tokens + st->prompt_tokens) / el : 0.0,
            final ? "elapsed" : "ETA", final ? el : eta_s(r, el));
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

/* Whether sequence idx belongs to this coordinator's part of the input. */
static bool is_mine(const infer_run *r, size_t idx)
{
    return r->o->part_count == 0 || idx % r->o->part_count == r->o->part_index;
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
            if (!is_mine(r, idx) || r->sink->is_done(r->sink->ctx, idx))
                continue;
            const us_prompt *p = &r->set->items[idx];
            r->wait_prompt -= p->n_bytes + 1;   /* the slot counts it from here */
            r->wait_gen -= p->max_tokens;
            char *done_line = NULL;
            int rc = admit(r, s, p, (long)idx, &done_line, err);
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
 * prefill never starves them; prefilling slots share the rest of the budget
 * in slot order, each up to its whole remaining prompt (the forward walks
 * the segments; bigger chunks mean fewer, larger matrix products). */
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
                size_t n = s->n_prompt - s->fed;
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
    /* Track the tokens of the current segment (a session's tail): the
     * chunk's last seg_fill tokens if it completed a segment, else all. */
    const size_t fill = s->state.seg_fill;
    if (s->n_seg + it->n_tokens >= r->L)
        memcpy(s->seg_tokens, it->tokens + it->n_tokens - fill, fill * sizeof(int32_t));
    else
        memcpy(s->seg_tokens + s->n_seg, it->tokens, it->n_tokens * sizeof(int32_t));
    s->n_seg = fill;
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
        int tok = us_sample(r->logits + k * r->V, r->allowed, r->V, &s->sampling, &s->rng,
                            r->scratch);
        if (tok < 0)              /* every allowed logit NaN: a broken model */
            finish = "nan_logits";
        else if (tok == US_TOKEN_EOS)
            finish = "eos";
        else {
            int rc = append_token(r, s, tok, &finish, err);
            if (rc == US_OK && r->stream != NULL)
                rc = r->stream->token(r->stream->ctx, s->tag, tok, err);
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

/* One forward step over the composed batch, then each item's result. */
static int run_step(infer_run *r, us_err *err)
{
    compose_step(r);
    size_t prefill_tokens = 0, step_tokens = 0;
    for (size_t k = 0; k < r->n_items; k++) {
        const slot *s = &r->slots[r->item_slot[k]];
        step_tokens += r->items[k].n_tokens;
        prefill_tokens += s->fed < s->n_prompt ? r->items[k].n_tokens : 0;
    }
    int rc = us_model_forward(r->m, &r->ws, r->items, r->n_items, r->logits, true, err);
    if (rc != US_OK)
        return rc;
    r->st->steps++;
    for (size_t k = 0; k < r->n_items && rc == US_OK; k++)
        rc = retire_item(r, k, err);
    /* Wall time since the previous step (admission and pacing included),
     * so the rates predict wall time. */
    double now = us_now_s(), dt = now - r->step_end_s;
    double share = (double)prefill_tokens / (double)step_tokens;
    r->step_end_s = now;
    r->prefill_s += dt * share;
    r->decode_s += dt * (1.0 - share);
    return rc;
}

/* Work of this coordinator's sequences still waiting for a slot (for the
 * ETA; with several coordinators each predicts its own part). */
static void count_waiting(infer_run *r)
{
    for (size_t i = 0; i < r->set->count; i++)
        if (is_mine(r, i) && !r->sink->is_done(r->sink->ctx, i)) {
            r->wait_prompt += r->set->items[i].n_bytes + 1;
            r->wait_gen += r->set->items[i].max_tokens;
        }
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
    count_waiting(&r);
    double t0 = us_now_s(), last_report = t0;
    r.step_end_s = t0;
    while (rc == US_OK) {
        if ((rc = admit_waiting(&r, err)) != US_OK || r.active == 0)
            break;
        rc = run_step(&r, err);
        if (rc == US_OK)
            rc = poll_sink(&r, err);
        if (rc == US_OK && o->progress && us_now_s() - last_report >= 1.0) {
            progress(&r, t0, false);
            last_report = us_now_s();
        }
        if (rc == US_OK)
            pace(o);
    }
    if (rc == US_OK) {
        st->seconds = us_now_s() - t0;
        if (o->progress)
            progress(&r, t0, true);
    }
    run_free(&r);
    return rc;
}

/* --- streams: sequences that arrive one by one (serve) ------------------- */

struct us_infer_stream {
    infer_run r;
    us_infer_opts o;
    us_infer_stats st;
    us_infer_stream_ops ops;
};

int us_infer_stream_open(us_infer_stream **out, const us_model *m, size_t batch_size,
                         size_t batch_tokens, const us_infer_stream_ops *ops, us_err *err)
{
    *out = NULL;
    if (batch_size == 0 || batch_tokens < batch_size)
        return us_err_set(err, US_EINVAL, "infer stream: need batch_size >= 1 and batch_tokens "
                          ">= batch_size (got %zu, %zu)", batch_size, batch_tokens);
    us_infer_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return us_err_set(err, US_ENOMEM, "infer stream: out of memory");
    s->o = (us_infer_opts){ .batch_size = batch_size, .batch_tokens = batch_tokens };
    s->ops = *ops;
    s->r = (infer_run){ .m = m, .o = &s->o, .stream = &s->ops, .st = &s->st, .B = batch_size,
                        .V = m->cfg.vocab_size, .L = m->cfg.segment_len };
    int rc = run_init(&s->r, err);
    if (rc != US_OK) {
        us_infer_stream_close(s);
        return rc;
    }
    s->r.step_end_s = us_now_s();
    *out = s;
    return US_OK;
}

size_t us_infer_stream_free_slots(const us_infer_stream *s)
{
    return s->r.B - s->r.active;
}

size_t us_infer_stream_active(const us_infer_stream *s)
{
    return s->r.active;
}

int us_infer_stream_add(us_infer_stream *s, const us_prompt *p, const us_sampler_params *sp,
                        uint64_t seed, uint64_t tag, us_err *err)
{
    infer_run *r = &s->r;
    if (p->session != NULL)
        return us_err_set(err, US_EUNSUPP, "infer stream: sessions are not supported");
    for (size_t i = 0; i < r->B; i++) {
        slot *sl = &r->slots[i];
        if (sl->index >= 0)
            continue;
        char *done_line = NULL;
        int rc = admit(r, sl, p, 0, &done_line, err);
        if (rc != US_OK)
            return rc;
        sl->tag = tag;
        sl->sampling = *sp;
        us_rng_seed(&sl->rng, seed, p->id);
        if (sl->max_tokens == 0)
            return finish_slot(r, sl, "length", err);
        r->active++;
        return US_OK;
    }
    return us_err_set(err, US_ERANGE, "infer stream: all %zu slots are busy", r->B);
}

int us_infer_stream_step(us_infer_stream *s, us_err *err)
{
    if (s->r.active == 0)
        return US_OK;
    return run_step(&s->r, err);
}

const us_infer_stats *us_infer_stream_stats(const us_infer_stream *s)
{
    return &s->st;
}

void us_infer_stream_close(us_infer_stream *s)
{
    if (s == NULL)
        return;
    run_free(&s->r);
    free(s);
}
