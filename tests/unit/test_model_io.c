/* test_model_io.c — model directory round trip, random init, value tables,
 * model stores (build/open/serve, every dtype), session state glue. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/unit/tmpdir.h"

#include "coordinator/infer/infer_session.h"
#include "coordinator/model/model.h"
#include "coordinator/model/model_io.h"
#include "coordinator/model/model_store.h"
#include "shard/session.h"
#include "shard/synthetic.h"
#include "shard/tensorfile.h"

#define tmpdir us_test_tmpdir

static const char *sub(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* A session store over tmpdir/name (its own copy of the path). */
static const us_session_store *dir_store(const char *name)
{
    static char path[256];
    static us_session_store store;
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    us_session_store_dir(&store, path);
    return &store;
}

static void tiny(us_model_config *c)
{
    us_err err = {0};
    assert_int_equal(us_model_config_preset(c, "tiny", &err), US_OK);
}

static void test_model_dir_roundtrip(void **state)
{
    (void)state;
    us_model_config c;
    tiny(&c);
    us_model a, b, d;
    us_err err = {0};
    assert_int_equal(us_model_alloc(&a, &c, &err), US_OK);
    assert_int_equal(us_model_alloc(&d, &c, &err), US_OK);
    us_model_init_random(&a, 3);
    us_model_init_random(&d, 3);
    assert_memory_equal(a.params, d.params, a.n_params * 4);     /* deterministic */
    us_model_init_random(&d, 4);
    assert_true(memcmp(a.params, d.params, a.n_params * 4) != 0);
    const float *g = us_model_param(&a, "layers.2.ffn_norm");
    assert_non_null(g);
    for (uint32_t i = 0; i < c.d_model; i++)
        assert_true(g[i] == 1.0f);
    /* N(0, 1/sqrt(d)) for wq: sample std within 10% */
    const float *wq = us_model_param(&a, "layers.0.attn.wq");
    double ss = 0;
    size_t n = (size_t)c.d_model * c.n_heads * c.head_dim;
    for (size_t i = 0; i < n; i++)
        ss += (double)wq[i] * wq[i];
    assert_true(fabs(sqrt(ss / n) * sqrt(c.d_model) - 1.0) < 0.1);
    assert_int_equal(us_model_save(&a, sub("m"), false, &err), US_OK);
    assert_int_equal(us_model_save(&a, sub("m"), false, &err), US_EEXIST);
    assert_int_equal(us_model_load(&b, sub("m"), &err), US_OK);
    assert_int_equal(b.n_params, a.n_params);
    assert_memory_equal(a.params, b.params, a.n_params * 4);
    assert_true(memcmp(&a.cfg, &b.cfg, sizeof a.cfg) == 0);
    assert_int_equal(us_model_load(&d, sub("nothing"), &err), US_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nothing/config.json"));
    us_model_free(&a);
    us_model_free(&b);
    us_model_free(&d);
}

/* Rewrites dir/weights.safetensors of m with the memory core declared as
 * [Hm][r][r], as files written before tucker_cores existed. */
static void write_legacy_core(const us_model *m, const char *dir)
{
    us_tensor_desc *descs = calloc(m->n_descs, sizeof *descs);
    assert_non_null(descs);
    for (size_t i = 0; i < m->n_descs; i++) {
        const us_param_desc *p = &m->descs[i];
        descs[i] = (us_tensor_desc){ .name = p->name, .dtype = US_DTYPE_F32, .ndim = p->ndim,
                                     .data = m->params + p->offset };
        memcpy(descs[i].shape, p->shape, sizeof p->shape);
        if (strstr(p->name, ".mem.core") != NULL) {
            descs[i].ndim = 3;
            descs[i].shape[1] = p->shape[2];
            descs[i].shape[2] = p->shape[3];
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    us_err err = {0};
    assert_int_equal(us_tf_write(path, US_TF_SAFETENSORS, descs, m->n_descs, true, &err), US_OK);
    free(descs);
}

/* A core stored as [Hm][r][r] (before MCS) loads when tucker_cores = 1 and
 * is refused, naming the tensor, when the config asks for 2 cores. */
static void test_model_legacy_core(void **state)
{
    (void)state;
    us_model_config c;
    tiny(&c);
    us_model a, b;
    us_err err = {0};
    assert_int_equal(us_model_alloc(&a, &c, &err), US_OK);
    us_model_init_random(&a, 9);
    const us_param_desc *core = NULL;
    for (size_t i = 0; i < a.n_descs; i++)
        if (strcmp(a.descs[i].name, "layers.1.mem.core") == 0)
            core = &a.descs[i];
    assert_non_null(core);
    assert_int_equal(core->ndim, 4);
    assert_int_equal(core->shape[1], 1);
    assert_int_equal(us_model_save(&a, sub("legacy"), false, &err), US_OK);
    write_legacy_core(&a, sub("legacy"));
    assert_int_equal(us_model_load(&b, sub("legacy"), &err), US_OK);
    assert_memory_equal(a.params, b.params, a.n_params * 4);
    us_model_free(&b);
    us_model_free(&a);
    c.memory.tucker_cores = 2;
    assert_int_equal(us_model_alloc(&a, &c, &err), US_OK);
    assert_int_equal(us_model_save(&a, sub("legacy2"), false, &err), US_OK);
    write_legacy_core(&a, sub("legacy2"));
    assert_int_equal(us_model_load(&b, sub("legacy2"), &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "tensor 'layers.1.mem.core'"));
    us_model_free(&a);
    /* pkm stores no core; the output gate adds .gate and .out [d][d] */
    c.memory.tucker_cores = 1;
    c.memory.tucker_rank = 1;
    c.memory.score = US_MEM_SCORE_PKM;
    c.memory.output_gate = 1;
    assert_int_equal(us_model_config_validate(&c, "pkm", &err), US_OK);
    assert_int_equal(us_model_alloc(&a, &c, &err), US_OK);
    assert_null(us_model_param(&a, "layers.1.mem.core"));
    assert_non_null(us_model_param(&a, "layers.1.mem.gate"));
    assert_non_null(us_model_param(&a, "layers.1.mem.out"));
    assert_null(a.layers[1].mem_core);
    assert_ptr_equal(a.layers[1].mem_out, us_model_param(&a, "layers.1.mem.out"));
    us_model_free(&a);
}

static void test_value_tables(void **state)
{
    (void)state;
    us_model_config c;
    tiny(&c);
    us_err err = {0};
    assert_int_equal(us_value_tables_write(sub("v"), &c, 8, false, &err), US_OK);
    us_value_tables vt;
    assert_int_equal(us_value_tables_load(&vt, sub("v"), &c, &err), US_OK);
    assert_int_equal(vt.n_tables, 1);
    float want[32];
    for (uint64_t r = 0; r < 64; r += 21) {
        us_synth_row_f32(want, 8, 0, r, 32);
        assert_memory_equal(us_rows_view_row(&vt.views[0], r), want, sizeof want);
    }
    us_value_tables_free(&vt);
    us_model_config other = c;
    other.memory.v_dim = 16;
    assert_int_equal(us_value_tables_load(&vt, sub("v"), &other, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "values/table_0.npy: table is f32 [64, 32]"));
}

static void test_model_store(void **state)
{
    (void)state;
    us_model_config c;
    tiny(&c);
    us_err err = {0};
    const us_dtype dtypes[4] = { US_DTYPE_F32, US_DTYPE_BF16, US_DTYPE_F16, US_DTYPE_INT8 };
    for (int d = 0; d < 4; d++) {
        char name[32];
        snprintf(name, sizeof name, "store_%s", us_dtype_name(dtypes[d]));
        assert_int_equal(us_model_store_build(sub(name), &c, 6, 3, dtypes[d], &err), US_OK);
        us_model_store ms;
        assert_int_equal(us_model_store_open(&ms, sub(name), &c, &err), US_OK);
        us_memory_backend be;
        us_model_store_backend(&ms, &be);
        uint64_t rows;
        uint32_t dim;
        assert_int_equal(be.table_info(be.ctx, 0, &rows, &dim, &err), US_OK);
        assert_int_equal(rows, 64);
        assert_int_equal(dim, 32);
        /* lookup of rows {5, 63} with weights {1, 0.5}: group 0 and 1 */
        uint64_t r[2] = { 5, 63 };
        float w[2] = { 1.0f, 0.5f }, out[2 * 32], a[32], b[32];
        uint8_t g[2] = { 0, 1 };
        assert_int_equal(be.lookup(be.ctx, 0, r, w, g, 1, 2, 2, out, &err), US_OK);
        us_synth_row_f32(a, 6, 0, 5, 32);
        us_synth_row_f32(b, 6, 0, 63, 32);
        float tol = dtypes[d] == US_DTYPE_F32 ? 0.0f : dtypes[d] == US_DTYPE_INT8 ? 5e-3f : 4e-3f;
        for (int i = 0; i < 32; i++) {
            assert_true(fabsf(out[i] - a[i]) <= tol);
            assert_true(fabsf(out[32 + i] - 0.5f * b[i]) <= tol);
        }
        assert_int_equal(be.lookup(be.ctx, 1, r, w, g, 1, 2, 2, out, &err), US_ENOTFOUND);
        us_model_store_close(&ms);
    }
    assert_int_equal(us_model_store_build(sub("store_f32"), &c, 6, 1, US_DTYPE_F32, &err),
                     US_EEXIST);
    /* a model with two memory layers finds no table_1 in this store */
    us_model_config two = c;
    two.layers[3] = US_LAYER_MEMORY;
    us_model_store ms;
    assert_int_equal(us_model_store_open(&ms, sub("store_f32"), &two, &err), US_ENOTFOUND);
    assert_non_null(strstr(err.msg, "memory layer 3: "));
    assert_non_null(strstr(err.msg, "no table \"table_1\" (id 1)"));
}

static void test_session_glue(void **state)
{
    (void)state;
    us_model_config c;
    tiny(&c);
    us_err err = {0};
    us_seq_state s, t;
    assert_int_equal(us_seq_state_init(&s, &c, &err), US_OK);
    assert_int_equal(us_seq_state_init(&t, &c, &err), US_OK);
    size_t mem = c.n_layers * c.n_heads * c.head_dim * c.head_dim;
    for (size_t i = 0; i < mem; i++)
        s.mem[i] = (float)i * 0.25f;
    s.mem_norm[7] = 3.0f;
    s.tokens_seen = 40;
    s.seg_fill = 8;
    int32_t tail[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 99 };   /* 8 fed + 1 unfed */
    us_session_update u = { .sid = "s-1", .key = "job/a", .state = &s, .tail = tail,
                            .n_tail = 9, .line = "{\"id\":\"a\"}" };
    assert_int_equal(us_infer_session_save(dir_store("sess"), &c, &u, &err), US_OK);
    us_session_resume r;
    /* another job: state restored, the tail is fed again */
    assert_int_equal(us_infer_session_load(dir_store("sess"), "s-1", "job/b", &c, &t, &r, &err), US_OK);
    assert_true(r.found);
    assert_null(r.done_line);
    assert_int_equal(r.n_tail, 9);
    assert_memory_equal(r.tail, tail, sizeof tail);
    assert_int_equal(r.tokens_seen, 41);
    assert_int_equal(t.tokens_seen, 41 - 9);
    assert_int_equal(t.seg_fill, 0);
    assert_memory_equal(t.mem, s.mem, mem * 4);
    assert_true(t.mem_norm[7] == 3.0f);
    us_session_resume_free(&r);
    /* the same job and sequence: its result is returned, not recomputed */
    assert_int_equal(us_infer_session_load(dir_store("sess"), "s-1", "job/a", &c, &t, &r, &err), US_OK);
    assert_string_equal(r.done_line, "{\"id\":\"a\"}");
    us_session_resume_free(&r);
    /* unknown session: fresh state */
    assert_int_equal(us_infer_session_load(dir_store("sess"), "new", "job/a", &c, &t, &r, &err), US_OK);
    assert_false(r.found);
    assert_true(t.mem[5] == 0.0f && t.tokens_seen == 0);
    /* another model shape */
    us_model_config other = c;
    other.head_dim = 16;
    us_seq_state o;
    assert_int_equal(us_seq_state_init(&o, &other, &err), US_OK);
    assert_int_equal(us_infer_session_load(dir_store("sess"), "s-1", "k", &other, &o, &r, &err),
                     US_EINVAL);
    assert_non_null(strstr(err.msg, "s-1"));
    /* a state written by something else (no USS1 bytes): corrupt */
    us_session_state raw;
    assert_int_equal(us_session_init(&raw, "raw", c.n_layers, c.n_heads, c.head_dim,
                                     c.head_dim, &err), US_OK);
    assert_int_equal(us_session_save(sub("sess"), &raw, &err), US_OK);
    us_session_free(&raw);
    assert_int_equal(us_infer_session_load(dir_store("sess"), "raw", "k", &c, &t, &r, &err),
                     US_ECORRUPT);
    assert_non_null(strstr(err.msg, "session \"raw\""));
    us_seq_state_free(&s);
    us_seq_state_free(&t);
    us_seq_state_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_dir_roundtrip),
        cmocka_unit_test(test_model_legacy_core),
        cmocka_unit_test(test_value_tables),
        cmocka_unit_test(test_model_store),
        cmocka_unit_test(test_session_glue),
    };
    return cmocka_run_group_tests(tests, us_test_tmpdir_setup, us_test_tmpdir_teardown);
}
