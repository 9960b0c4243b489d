/* test_model.c — the forward step (model.c): batch contract, asynchronous and
 * overlapping memory-layer backends, shape checks. */
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

/* ---- forward contract ---- */

typedef struct fixture {
    us_model m;
    float *table;
    const uint8_t *blocks[1];
    us_rows_view view;
    us_memory_local local;
    us_memory_backend be;
} fixture;

static void fixture_init_cfg(fixture *fx, const us_model_config *config,
                             uint32_t rows_override)
{
    const us_model_config cfg = *config;
    us_err err = {0};
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

static void fixture_init(fixture *fx, uint32_t rows_override)
{
    us_model_config cfg;
    us_err err = {0};
    assert_int_equal(us_model_config_preset(&cfg, "tiny", &err), US_OK);
    fixture_init_cfg(fx, &cfg, rows_override);
}

static void fixture_free(fixture *fx)
{
    us_model_free(&fx->m);
    free(fx->table);
}

static float max_abs_diff(const float *x, const float *y, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++)
        m = fabsf(x[i] - y[i]) > m ? fabsf(x[i] - y[i]) : m;
    return m;
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
    assert_int_equal(us_workspace_init(&ws, c, 3 * L, &err), US_OK);
    assert_int_equal(us_seq_state_init(&a, c, &err), US_OK);
    assert_int_equal(us_seq_state_init(&b, c, &err), US_OK);
    assert_null(a.kr_cache);   /* no RoPE: no rotated-key cache */
    int32_t toks[40], other[40];
    for (int i = 0; i < 40; i++) {
        toks[i] = (i * 37 + 11) % 256;
        other[i] = (i * 101 + 7) % 259;
    }
    float *alone = malloc(40 * V * 4), *batched = malloc(3 * L * V * 4);
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
    /* all 40 tokens (2.5 segments) in one step: the forward walks the
     * segments, every position's logits as above */
    us_seq_state_reset(&a, c);
    it = (us_batch_item){ &a, toks, 40 };
    assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, batched, false, &err), US_OK);
    assert_int_equal(a.tokens_seen, 40);
    assert_int_equal(a.seg_fill, 40 % L);
    assert_true(max_abs_diff(batched, alone, 40 * V) < 1e-5f);
    /* chunks of 13 crossing segment boundaries, each step batched with b
     * taking 21 tokens (also crossing): a's logits unchanged */
    us_seq_state_reset(&a, c);
    us_seq_state_reset(&b, c);
    for (size_t pos = 0; pos < 40; pos += 13) {
        uint32_t n = 40 - pos < 13 ? (uint32_t)(40 - pos) : 13;
        us_batch_item two[2] = { { &b, other, 21 }, { &a, toks + pos, n } };
        assert_int_equal(us_model_forward(&fx.m, &ws, two, 2, batched, false, &err), US_OK);
        assert_true(max_abs_diff(batched + 21 * V, alone + pos * V, n * V) < 1e-5f);
    }
    assert_int_equal(a.seg_fill, 40 % L);
    assert_int_equal(b.tokens_seen, 4 * 21);
    assert_int_equal(b.seg_fill, (4 * 21) % L);
    /* contract violations change nothing */
    uint64_t seen = a.tokens_seen;
    uint32_t fill = a.seg_fill;
    it = (us_batch_item){ &a, toks, 0 };
    assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, batched, true, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "batch item 0: no tokens"));
    us_batch_item same[2] = { { &a, toks, 1 }, { &a, toks + 1, 1 } };
    assert_int_equal(us_model_forward(&fx.m, &ws, same, 2, batched, true, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "batch items 0 and 1: the same sequence state"));
    int32_t bad_tok = 259;
    it = (us_batch_item){ &a, &bad_tok, 1 };
    assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, batched, true, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "token 0 is 259"));
    assert_int_equal(a.tokens_seen, seen);
    assert_int_equal(a.seg_fill, fill);
    us_seq_state_reset(&b, c);   /* 40 + 9 > 48 */
    us_batch_item many[2] = { { &b, toks, 40 }, { &a, toks, 9 } };
    assert_int_equal(us_model_forward(&fx.m, &ws, many, 2, batched, true, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "batch of 49 tokens exceeds the workspace (48)"));
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

/* The variants (RoPE, 2 Tucker cores, l2 query norm, output gate): segment
 * prefill, token-by-token decode, one whole step and chunks of 13 crossing
 * segments give the same logits; the state holds the rotated keys too. */
static void test_forward_variants_chunks(void **state)
{
    (void)state;
    us_model_config cfg;
    us_err err = {0};
    assert_int_equal(us_model_config_preset(&cfg, "tiny", &err), US_OK);
    cfg.rope_theta = 10000.0f;
    cfg.memory.tucker_cores = 2;
    cfg.memory.query_norm = US_QNORM_L2;
    cfg.memory.output_gate = 1;
    assert_int_equal(us_model_config_validate(&cfg, "variants", &err), US_OK);
    fixture fx;
    fixture_init_cfg(&fx, &cfg, 0);
    const us_model_config *c = &fx.m.cfg;
    const size_t V = c->vocab_size, L = c->segment_len;
    us_workspace ws;
    us_seq_state a;
    assert_int_equal(us_workspace_init(&ws, c, 40, &err), US_OK);
    assert_int_equal(us_seq_state_init(&a, c, &err), US_OK);
    assert_non_null(a.kr_cache);
    assert_int_equal(us_seq_state_floats(c), 4 * (3 * 16 * 64 + 64 * 32 + 64));
    assert_int_equal(us_model_set_backend(&fx.m, &fx.be, &err), US_OK);
    int32_t toks[40];
    for (int i = 0; i < 40; i++)
        toks[i] = (i * 37 + 11) % 256;
    float *ref = malloc(40 * V * 4), *got = malloc(40 * V * 4);
    for (size_t pos = 0; pos < 40; pos += L) {
        us_batch_item it = { &a, toks + pos, (uint32_t)(40 - pos < L ? 40 - pos : L) };
        assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, ref + pos * V, false, &err),
                         US_OK);
    }
    const size_t chunk[3] = { 1, 40, 13 };
    for (int k = 0; k < 3; k++) {
        us_seq_state_reset(&a, c);
        for (size_t pos = 0; pos < 40; pos += chunk[k]) {
            size_t n = 40 - pos < chunk[k] ? 40 - pos : chunk[k];
            us_batch_item it = { &a, toks + pos, (uint32_t)n };
            assert_int_equal(us_model_forward(&fx.m, &ws, &it, 1, got + pos * V, false, &err),
                             US_OK);
        }
        if (!(max_abs_diff(got, ref, 40 * V) < 1e-5f))
            fail_msg("chunks of %zu: max diff %g", chunk[k], max_abs_diff(got, ref, 40 * V));
    }
    free(ref);
    free(got);
    us_seq_state_free(&a);
    us_workspace_free(&ws);
    fixture_free(&fx);
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
        cmocka_unit_test(test_forward_contract),
        cmocka_unit_test(test_backend_shape_mismatch),
        cmocka_unit_test(test_forward_variants_chunks),
        cmocka_unit_test(test_async_backend),
        cmocka_unit_test(test_two_lookups_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
