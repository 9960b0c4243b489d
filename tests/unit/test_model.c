/* test_model.c — model config, prompts/UTF-8, sampler, journal, forward-step contract. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "coordinator/infer/journal.h"
#include "coordinator/model/model.h"
#include "coordinator/model/model_config.h"
#include "coordinator/model/model_io.h"
#include "coordinator/infer/prompts.h"
#include "coordinator/infer/sampler.h"
#include "shard/synthetic.h"

/* ---- config ---- */

static void test_config_roundtrip(void **state)
{
    (void)state;
    us_model_config a, b;
    us_err err = {0};
    assert_int_equal(us_model_config_preset(&a, "tiny", &err), US_OK);
    assert_int_equal(a.n_layers, 4);
    assert_int_equal(a.layers[1], US_LAYER_MEMORY);
    assert_int_equal(a.layers[2], US_LAYER_MOE);
    char *json = us_model_config_to_json(&a);
    assert_non_null(json);
    assert_int_equal(us_model_config_parse(&b, json, "cfg", &err), US_OK);
    assert_true(memcmp(&a, &b, sizeof a) == 0);
    assert_int_equal(us_model_config_table_rows(&a), 16 * 16 / 4);
    assert_int_equal(us_model_config_memory_layer_index(&a, 0), 1);
    assert_int_equal(us_model_config_memory_layer_index(&a, 1), -1);
    assert_int_equal(us_model_config_preset(&b, "huge", &err), US_EINVAL);
    /* one broken field at a time: the message names it */
    struct { const char *from, *to, *want; int code; } cases[] = {
        { "\"d_model\":", "\"d_modelx\":", "missing field 'd_model'", US_EINVAL },
        { "\"version\":\t1", "\"version\":\t2", "version 2", US_EVERSION },
        { "\"n_layers\":\t4", "\"n_layers\":\t3", "'n_layers' is 3", US_EINVAL },
        { "\"memory\"]", "\"attention\"]", "layers[", US_EINVAL },
        { "\"ive_groups\":\t4", "\"ive_groups\":\t3", "ive_groups 3 does not divide", US_EINVAL },
        { "\"head_dim\":\t32", "\"head_dim\":\t32.5", "'head_dim' must be an integer", US_EINVAL },
        { "\"delta\"", "\"fast\"", "infini_rule", US_EINVAL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = strstr(json, cases[i].from);
        if (p == NULL) {   /* layers[] holds "memory" not followed by ] in tiny */
            assert_string_equal(cases[i].from, "\"memory\"]");
            p = strstr(json, "\"memory\", ");
            assert_non_null(p);
            cases[i].from = "\"memory\", ";
            cases[i].to = "\"attention\", ";
        }
        size_t pre = (size_t)(p - json), fl = strlen(cases[i].from);
        char *bad = malloc(strlen(json) + 64);
        snprintf(bad, strlen(json) + 64, "%.*s%s%s", (int)pre, json, cases[i].to, p + fl);
        us_err_clear(&err);
        assert_int_equal(us_model_config_parse(&b, bad, "m/config.json", &err), cases[i].code);
        if (strstr(err.msg, cases[i].want) == NULL || strstr(err.msg, "m/config.json") == NULL)
            fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, cases[i].want);
        free(bad);
    }
    assert_int_equal(us_model_config_parse(&b, "[1,2]", "x", &err), US_EINVAL);
    free(json);
}

/* A norm_eps that is > 0 as a double but 0 as the model's float was accepted
 * (and RMSNorm then divides by zero on a zero row); found by
 * tests/fuzz/fuzz_model_config.c. */
static void test_config_norm_eps_float_range(void **state)
{
    (void)state;
    us_model_config a, b;
    us_err err = {0};
    assert_int_equal(us_model_config_preset(&a, "tiny", &err), US_OK);
    char *json = us_model_config_to_json(&a);
    assert_non_null(json);
    char *key = strstr(json, "\"norm_eps\":");
    assert_non_null(key);
    char *value = key + strlen("\"norm_eps\":");
    char *end = strchr(value, ',');
    assert_non_null(end);
    const struct { const char *eps; int code; float want; } cases[] = {
        { "1e-60", US_EINVAL, 0 },     /* rounds to 0.0f */
        { "1e-46", US_EINVAL, 0 },     /* below half the smallest subnormal */
        { "1e-30", US_OK, 1e-30f },
        { "1", US_OK, 1.0f },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t cap = strlen(json) + 32;
        char *edited = malloc(cap);
        assert_non_null(edited);
        snprintf(edited, cap, "%.*s %s%s", (int)(value - json), json, cases[i].eps, end);
        us_err_clear(&err);
        assert_int_equal(us_model_config_parse(&b, edited, "m/config.json", &err), cases[i].code);
        if (cases[i].code != US_OK)
            assert_non_null(strstr(err.msg, "norm_eps"));
        else
            assert_true(b.norm_eps == cases[i].want);
        free(edited);
    }
    free(json);
}

/* ---- prompts / UTF-8 ---- */

static void test_utf8(void **state)
{
    (void)state;
    size_t bad = 99;
    assert_true(us_utf8_valid((const uint8_t *)"abc \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80", 15, &bad));
    const struct { const char *s; size_t n, at; } invalid[] = {
        { "a\xc0\x80", 3, 1 },           /* overlong NUL */
        { "ab\xed\xa0\x80", 5, 2 },      /* UTF-16 surrogate */
        { "\xf4\x90\x80\x80", 4, 0 },    /* > U+10FFFF */
        { "xy\xe2\x9c", 4, 2 },          /* truncated */
        { "\x80", 1, 0 },                /* lone continuation */
        { "\xff", 1, 0 },
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        assert_false(us_utf8_valid((const uint8_t *)invalid[i].s, invalid[i].n, &bad));
        assert_int_equal(bad, invalid[i].at);
    }
    char out[32];
    size_t n = us_utf8_sanitize(out, (const uint8_t *)"a\xff\xc3\xa9", 4);
    assert_int_equal(n, 1 + 3 + 2);
    assert_string_equal(out, "a\xef\xbf\xbd\xc3\xa9");
}

static void test_prompts_parse(void **state)
{
    (void)state;
    us_prompt_set set;
    us_err err = {0};
    const char *ok = "{\"id\":\"a\",\"prompt\":\"h\\u00e9\",\"max_tokens\":3}\r\n\n  \n"
                     "{\"id\":\"b\",\"prompt\":\"\"}";
    assert_int_equal(us_prompts_parse(&set, ok, strlen(ok), "in", 7, 100, &err), US_OK);
    assert_int_equal(set.count, 2);
    assert_int_equal(set.items[0].n_bytes, 3);
    assert_memory_equal(set.items[0].bytes, "h\xc3\xa9", 3);
    assert_int_equal(set.items[0].max_tokens, 3);
    assert_int_equal(set.items[1].max_tokens, 7);
    assert_int_equal(set.items[1].line, 4);
    assert_int_equal(us_prompts_find(&set, "b"), 1);
    assert_int_equal(us_prompts_find(&set, "c"), -1);
    uint64_t h = set.file_hash;
    us_prompts_free(&set);
    assert_int_equal(us_prompts_parse(&set, ok, strlen(ok), "in", 7, 100, &err), US_OK);
    assert_true(set.file_hash == h);
    us_prompts_free(&set);
    const struct { const char *text, *want; } bad[] = {
        { "{\"id\":\"a\",\"prompt\":\"x\"}\n[1]\n", "in:2: not a JSON object" },
        { "{\"id\":\"\",\"prompt\":\"x\"}", "in:1: \"id\" must be" },
        { "{\"id\":\"a\",\"prompt\":7}", "in:1: \"prompt\" must be a string" },
        { "{\"id\":\"a\",\"prompt\":\"x\",\"max_tokens\":1.5}", "in:1: \"max_tokens\"" },
        { "{\"id\":\"a\",\"prompt\":\"0123456789x\"}", "in:1: prompt of 11 bytes exceeds" },
        { "{\"id\":\"a\",\"prompt\":\"a\\\\u0000\"}\n{\"id\":\"b\",\"prompt\":\"\\u0000\"}",
          "in:2: NUL" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        us_err_clear(&err);
        assert_int_equal(us_prompts_parse(&set, bad[i].text, strlen(bad[i].text), "in", 7, 10,
                                          &err), US_EINVAL);
        if (strstr(err.msg, bad[i].want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].want);
        assert_int_equal(set.count, 0);
    }
}

/* ---- sampler ---- */

static void test_sampler(void **state)
{
    (void)state;
    float logits[5] = { 1, 3, 3, NAN, 2 };
    uint8_t allowed[5] = { 1, 1, 1, 1, 1 };
    void *scratch = malloc(us_sampler_scratch_bytes(5));
    us_rng rng;
    us_rng_seed(&rng, 1, "s");
    us_sampler_params greedy = { 0.0f, 1.0f };
    assert_int_equal(us_sample(logits, allowed, 5, &greedy, &rng, scratch), 1);  /* tie -> lower */
    allowed[1] = 0;
    assert_int_equal(us_sample(logits, allowed, 5, &greedy, &rng, scratch), 2);
    us_sampler_params narrow = { 1.0f, 1e-6f };                                /* top-p ~ 0 */
    for (int i = 0; i < 20; i++)
        assert_int_equal(us_sample(logits, allowed, 5, &narrow, &rng, scratch), 2);
    float none[2] = { NAN, NAN };
    assert_int_equal(us_sample(none, NULL, 2, &narrow, &rng, scratch), -1);
    /* p = (1/4, 3/4): frequencies within 1.5% over 20000 draws (fixed seed) */
    float two[2] = { 0.0f, logf(3.0f) };
    us_sampler_params t1 = { 1.0f, 1.0f };
    int count1 = 0;
    for (int i = 0; i < 20000; i++)
        count1 += us_sample(two, NULL, 2, &t1, &rng, scratch) == 1;
    assert_true(fabs(count1 / 20000.0 - 0.75) < 0.015);
    /* top-p 0.7 keeps only the 0.75 token */
    us_sampler_params p7 = { 1.0f, 0.7f };
    for (int i = 0; i < 100; i++)
        assert_int_equal(us_sample(two, NULL, 2, &p7, &rng, scratch), 1);
    /* streams: same (seed, name) -> same draws; another name -> different */
    us_rng a, b, c;
    us_rng_seed(&a, 9, "id1");
    us_rng_seed(&b, 9, "id1");
    us_rng_seed(&c, 9, "id2");
    uint64_t x = us_rng_next(&a);
    assert_true(x == us_rng_next(&b));
    assert_true(x != us_rng_next(&c));
    free(scratch);
}

/* ---- journal ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void test_journal(void **state)
{
    (void)state;
    char dir[] = "/tmp/us_journal_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[256], jpath[300];
    snprintf(out, sizeof out, "%s/out.jsonl", dir);
    snprintf(jpath, sizeof jpath, "%s.journal", out);
    const char *in = "{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"b\",\"prompt\":\"y\"}\n"
                     "{\"id\":\"c\",\"prompt\":\"z\"}\n";
    us_prompt_set set;
    us_err err = {0};
    assert_int_equal(us_prompts_parse(&set, in, strlen(in), "in", 4, 100, &err), US_OK);
    us_journal j;
    assert_int_equal(us_journal_open(&j, out, &set, 42, &err), US_OK);
    assert_int_equal(us_journal_finish(&j, 1, "{\"id\":\"b\"}", &err), US_OK);
    char *o = slurp(out);
    assert_string_equal(o, "");                   /* b waits for a: input order */
    free(o);
    assert_int_equal(us_journal_finish(&j, 1, "{\"id\":\"b\"}", &err), US_EINVAL);
    assert_int_equal(us_journal_finish(&j, 0, "{\"id\":\"a\"}", &err), US_OK);
    o = slurp(out);
    assert_string_equal(o, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
    free(o);
    us_journal_close(&j);
    /* a torn record (killed mid-append) and a damaged OUT are repaired */
    FILE *f = fopen(jpath, "ab");
    fputs("{\"id\":\"c\",\"te", f);
    fclose(f);
    f = fopen(out, "wb");
    fputs("{\"id\":\"a\"}\n{\"id\"", f);
    fclose(f);
    assert_int_equal(us_journal_open(&j, out, &set, 42, &err), US_OK);
    assert_int_equal(j.n_resumed, 2);
    assert_true(us_journal_is_done(&j, 0) && us_journal_is_done(&j, 1));
    assert_false(us_journal_is_done(&j, 2));
    o = slurp(out);
    assert_string_equal(o, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
    free(o);
    assert_int_equal(us_journal_finish(&j, 2, "{\"id\":\"c\"}", &err), US_OK);
    us_journal j2;   /* a second job on the same output is refused while j runs */
    assert_int_equal(us_journal_open(&j2, out, &set, 42, &err), US_EEXIST);
    assert_non_null(strstr(err.msg, "another infer job"));
    us_journal_close(&j);
    o = slurp(out);
    assert_string_equal(o, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\"}\n");
    free(o);
    o = slurp(jpath);
    assert_non_null(strstr(o, "\"fingerprint\":\"000000000000002a\""));
    assert_null(strstr(o, "\"te"));               /* the torn bytes are gone */
    free(o);
    /* another command's journal is refused, OUT untouched */
    assert_int_equal(us_journal_open(&j, out, &set, 43, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "different command"));
    /* a journal record naming an unknown id is corruption, with its line */
    f = fopen(jpath, "ab");
    fputs("{\"id\":\"zz\"}\n", f);
    fclose(f);
    assert_int_equal(us_journal_open(&j, out, &set, 42, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "out.jsonl.journal:5"));
    /* OUT without a journal: refused */
    unlink(jpath);
    assert_int_equal(us_journal_open(&j, out, &set, 42, &err), US_EEXIST);
    unlink(out);
    char lock[300];
    snprintf(lock, sizeof lock, "%s.lock", out);
    unlink(lock);
    rmdir(dir);
    us_prompts_free(&set);
}

/* ---- forward contract ---- */

typedef struct fixture {
    us_model m;
    float *table;
    const uint8_t *blocks[1];
    us_rows_view view;
    us_memory_local local;
    us_memory_backend be;
} fixture;

static void fixture_init(fixture *fx, uint32_t rows_override)
{
    us_model_config cfg;
    us_err err = {0};
    assert_int_equal(us_model_config_preset(&cfg, "tiny", &err), US_OK);
    assert_int_equal(us_model_alloc(&fx->m, &cfg, &err), US_OK);
    us_model_init_random(&fx->m, 5);
    uint64_t rows = rows_override ? rows_override : us_model_config_table_rows(&cfg);
    fx->table = malloc(rows * cfg.memory.v_dim * sizeof(float));
    for (uint64_t r = 0; r < rows; r++)
        us_synth_row_f32(fx->table + r * cfg.memory.v_dim, 5, 0, r, cfg.memory.v_dim);
    fx->blocks[0] = (const uint8_t *)fx->table;
    fx->view = (us_rows_view){ .dtype = US_DTYPE_F32, .dim = cfg.memory.v_dim,
        .block_bits = 12, .row_stride_bytes = cfg.memory.v_dim * 4, .rows = rows,
        .n_blocks = 1, .blocks = fx->blocks };
    fx->local = (us_memory_local){ .tables = &fx->view, .n_tables = 1, .n_threads = 1 };
    us_memory_local_backend(&fx->be, &fx->local);
}

static void fixture_free(fixture *fx)
{
    us_model_free(&fx->m);
    free(fx->table);
}

static void test_forward_contract(void **state)
{
    (void)state;
    fixture fx;
    us_err err = {0};
    fixture_init(&fx, 0);
    const us_model_config *c = &fx.m.cfg;
    const size_t V = c->vocab_size, L = c->segment_len;
    us_workspace ws;
    us_seq_state a, b;
    assert_int_equal(us_workspace_init(&ws, c, 2 * L, &err), US_OK);
    assert_int_equal(us_seq_state_init(&a, c, &err), US_OK);
    assert_int_equal(us_seq_state_init(&b, c, &err), US_OK);
    int32_t toks[40], other[40];
    for (int i = 0; i < 40; i++) {
        toks[i] = (i * 37 + 11) % 256;
        other[i] = (i * 101 + 7) % 259;
    }
    float *alone = malloc(40 * V * 4), *batched = malloc(2 * L * V * 4);
    us_batch_item it = { &a, toks, 1 };
    /* no backend yet: the memory layer refuses to run */
    assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, alone, false, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "no value backend"));
    us_seq_state_reset(&a, c);
    assert_int_equal(us_model_set_backend(&fx.m, &fx.be, &err), US_OK);
    /* sequence a alone, segment-sized chunks: 40 tokens = 2.5 segments */
    for (size_t pos = 0; pos < 40;) {
        size_t n = 40 - pos < L ? 40 - pos : L;
        it = (us_batch_item){ &a, toks + pos, (uint32_t)n };
        assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, alone + pos * V, false, &err),
                         US_OK);
        pos += n;
    }
    assert_int_equal(a.tokens_seen, 40);
    assert_int_equal(a.seg_fill, 40 % L);
    /* again, token by token, batched with b (last_only logits): same values */
    us_seq_state_reset(&a, c);
    float maxdiff = 0;
    for (size_t pos = 0; pos < 40; pos++) {
        us_batch_item two[2] = { { &b, other + pos, 1 }, { &a, toks + pos, 1 } };
        assert_int_equal(us_model_forward(&fx.m, &ws, two, 2, batched, true, &err), US_OK);
        for (size_t v = 0; v < V; v++) {
            float d = fabsf(batched[V + v] - alone[pos * V + v]);
            maxdiff = d > maxdiff ? d : maxdiff;
        }
    }
    assert_true(maxdiff < 1e-4f);
    assert_true(maxdiff >= 0.0f);
    /* contract violations change nothing */
    uint64_t seen = a.tokens_seen;
    uint32_t fill = a.seg_fill;
    it = (us_batch_item){ &a, toks, (uint32_t)(L - fill + 1) };
    assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, batched, true, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "segment"));
    int32_t bad_tok = 259;
    it = (us_batch_item){ &a, &bad_tok, 1 };
    assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, batched, true, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "token 0 is 259"));
    assert_int_equal(a.tokens_seen, seen);
    assert_int_equal(a.seg_fill, fill);
    us_seq_state_reset(&b, c);   /* b may take a whole segment: 16 + 8 + 16 > 32 */
    us_batch_item many[3] = { { &b, toks, 16 }, { &a, toks, 8 }, { &b, toks, 16 } };
    assert_int_equal(us_model_forward(&fx.m, &ws, many, 3, batched, true, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "exceeds the workspace"));
    /* state size does not grow with the sequence */
    assert_int_equal(us_seq_state_floats(c), 4 * (2 * 16 * 64 + 64 * 32 + 64));
    free(alone);
    free(batched);
    us_seq_state_free(&a);
    us_seq_state_free(&b);
    us_workspace_free(&ws);
    fixture_free(&fx);
}

/* An asynchronous backend over the local one: begin stores the request,
 * end performs it; counts calls and can fail on demand. */
typedef struct async_fake {
    us_memory_backend inner;
    const uint64_t *rows[2];     /* per table: the request kept until its end */
    const float *weights[2];
    const uint8_t *groups[2];
    size_t n_tokens[2], k[2];
    int n_groups, begins, ends, in_flight, max_in_flight, fail_end;
} async_fake;

static int fake_begin(void *ctx, int table, const uint64_t *rows, const float *weights,
                      const uint8_t *groups, size_t n_tokens, size_t k, int n_groups,
                      us_err *err)
{
    (void)err;
    async_fake *f = ctx;
    f->rows[table] = rows; f->weights[table] = weights; f->groups[table] = groups;
    f->n_tokens[table] = n_tokens; f->k[table] = k; f->n_groups = n_groups;
    f->begins++;
    if (++f->in_flight > f->max_in_flight)
        f->max_in_flight = f->in_flight;
    return US_OK;
}

static int fake_end(void *ctx, int table, float *out, us_err *err)
{
    async_fake *f = ctx;
    f->ends++;
    f->in_flight--;
    if (f->fail_end)
        return us_err_set(err, US_EIO, "fake shard lost");
    return f->inner.lookup(f->inner.ctx, table, f->rows[table], f->weights[table],
                           f->groups[table], f->n_tokens[table], f->k[table], f->n_groups,
                           out, err);
}

static int fake_info(void *ctx, int table, uint64_t *rows, uint32_t *dim, us_err *err)
{
    async_fake *f = ctx;
    return f->inner.table_info(f->inner.ctx, table, rows, dim, err);
}

static void test_async_backend(void **state)
{
    (void)state;
    fixture fx;
    us_err err = {0};
    fixture_init(&fx, 0);
    const us_model_config *c = &fx.m.cfg;
    const size_t V = c->vocab_size;
    us_workspace ws;
    us_seq_state a;
    assert_int_equal(us_workspace_init(&ws, c, 16, &err), US_OK);
    assert_int_equal(us_seq_state_init(&a, c, &err), US_OK);
    int32_t toks[16];
    for (int i = 0; i < 16; i++)
        toks[i] = (i * 29 + 1) % 256;
    float sync_logits[16 * 259], async_logits[16 * 259];
    us_batch_item it = { &a, toks, 16 };
    assert_int_equal(us_model_set_backend(&fx.m, &fx.be, &err), US_OK);
    assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, sync_logits, false, &err), US_OK);
    async_fake f = { .inner = fx.be };
    us_memory_backend be = { .ctx = &f, .table_info = fake_info, .lookup_begin = fake_begin,
                             .lookup_end = fake_end };
    assert_int_equal(us_model_set_backend(&fx.m, &be, &err), US_OK);
    us_seq_state_reset(&a, c);
    assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, async_logits, false, &err), US_OK);
    assert_memory_equal(sync_logits, async_logits, 16 * V * sizeof(float));
    assert_int_equal(f.begins, 1);
    assert_int_equal(f.ends, 1);
    /* a failing end: the error names the layer, every begin got its end */
    f.fail_end = 1;
    us_seq_state_reset(&a, c);
    assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, async_logits, false, &err), US_EIO);
    assert_non_null(strstr(err.msg, "layer 2: fake shard lost"));   /* skip 1: ends at 2 */
    assert_int_equal(f.begins, f.ends);
    assert_int_equal(f.in_flight, 0);
    us_seq_state_free(&a);
    us_workspace_free(&ws);
    fixture_free(&fx);
}

/* Two memory layers with skip 2: both lookups are in flight together and
 * need their own buffers; results equal the synchronous backend. */
static void test_two_lookups_in_flight(void **state)
{
    (void)state;
    us_err err = {0};
    us_model_config c;
    assert_int_equal(us_model_config_preset(&c, "tiny", &err), US_OK);
    us_layer_kind kinds[4] = { US_LAYER_MEMORY, US_LAYER_MEMORY, US_LAYER_DENSE, US_LAYER_MOE };
    memcpy(c.layers, kinds, sizeof kinds);
    c.memory.skip = 2;
    us_model m;
    assert_int_equal(us_model_alloc(&m, &c, &err), US_OK);
    us_model_init_random(&m, 8);
    const size_t rows = us_model_config_table_rows(&c), dim = c.memory.v_dim;
    float *t0 = malloc(rows * dim * 4), *t1 = malloc(rows * dim * 4);
    for (uint64_t r = 0; r < rows; r++) {
        us_synth_row_f32(t0 + r * dim, 1, 0, r, (uint32_t)dim);
        us_synth_row_f32(t1 + r * dim, 1, 1, r, (uint32_t)dim);
    }
    const uint8_t *b0[1] = { (const uint8_t *)t0 }, *b1[1] = { (const uint8_t *)t1 };
    us_rows_view views[2];
    for (int i = 0; i < 2; i++)
        views[i] = (us_rows_view){ .dtype = US_DTYPE_F32, .dim = (uint32_t)dim,
            .block_bits = 12, .row_stride_bytes = dim * 4, .rows = rows, .n_blocks = 1,
            .blocks = i ? b1 : b0 };
    us_memory_local local = { .tables = views, .n_tables = 2, .n_threads = 1 };
    us_memory_backend sync_be;
    us_memory_local_backend(&sync_be, &local);
    async_fake f = { .inner = sync_be };
    us_memory_backend async_be = { .ctx = &f, .table_info = fake_info,
                                   .lookup_begin = fake_begin, .lookup_end = fake_end };
    us_workspace ws;
    us_seq_state a;
    assert_int_equal(us_workspace_init(&ws, &c, 8, &err), US_OK);
    assert_int_equal(us_seq_state_init(&a, &c, &err), US_OK);
    int32_t toks[8] = { 256, 72, 101, 108, 108, 111, 33, 10 };
    float l1[8 * 259], l2[8 * 259];
    us_batch_item it = { &a, toks, 8 };
    assert_int_equal(us_model_set_backend(&m, &sync_be, &err), US_OK);
    assert_int_equal(us_model_forward(&m, &ws, &it, 1, l1, false, &err), US_OK);
    us_seq_state_reset(&a, &c);
    assert_int_equal(us_model_set_backend(&m, &async_be, &err), US_OK);
    f.fail_end = 0;
    assert_int_equal(us_model_forward(&m, &ws, &it, 1, l2, false, &err), US_OK);
    assert_int_equal(f.max_in_flight, 2);
    assert_int_equal(f.begins, 2);
    assert_memory_equal(l1, l2, sizeof l1);
    free(t0);
    free(t1);
    us_seq_state_free(&a);
    us_workspace_free(&ws);
    us_model_free(&m);
}

static void test_backend_shape_mismatch(void **state)
{
    (void)state;
    fixture fx;
    us_err err = {0};
    fixture_init(&fx, 60);
    assert_int_equal(us_model_set_backend(&fx.m, &fx.be, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "memory table 0 (layer 1): store has 60 rows x 32, "
                                    "model wants 64 x 32"));
    fx.local.n_tables = 0;
    assert_int_equal(us_model_set_backend(&fx.m, &fx.be, &err), US_ENOTFOUND);
    fixture_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_roundtrip),
        cmocka_unit_test(test_config_norm_eps_float_range),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_prompts_parse),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_journal),
        cmocka_unit_test(test_forward_contract),
        cmocka_unit_test(test_backend_shape_mismatch),
        cmocka_unit_test(test_async_backend),
        cmocka_unit_test(test_two_lookups_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
