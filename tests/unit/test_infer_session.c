/* test_infer_session.c — a session continued over two infer jobs generates
 * exactly what one model pass over BOS + prompt1 + generated1 + prompt2
 * generates (greedy), including the generated tokens of job 1 that were
 * never fed in job 1 (the session tail). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cJSON.h>
#include <cmocka.h>

#include "coordinator/infer/infer.h"
#include "coordinator/infer/journal.h"
#include "coordinator/model/model.h"
#include "coordinator/model/model_io.h"
#include "shard/synthetic.h"

static us_model model;
static float *table;
static const uint8_t *blocks[1];
static us_rows_view view;
static us_memory_local local;
static char dir[64];

static int setup(void **state)
{
    (void)state;
    us_model_config c;
    us_err err = {0};
    if (us_model_config_preset(&c, "tiny", &err) != US_OK || us_model_alloc(&model, &c, &err))
        return -1;
    us_model_init_random(&model, 11);
    uint64_t rows = us_model_config_table_rows(&c);
    table = malloc(rows * c.memory.v_dim * sizeof(float));
    for (uint64_t r = 0; r < rows; r++)
        us_synth_row_f32(table + r * c.memory.v_dim, 11, 0, r, c.memory.v_dim);
    blocks[0] = (const uint8_t *)table;
    view = (us_rows_view){ .dtype = US_DTYPE_F32, .dim = c.memory.v_dim, .block_bits = 12,
        .row_stride_bytes = c.memory.v_dim * 4, .rows = rows, .n_blocks = 1, .blocks = blocks };
    local = (us_memory_local){ .tables = &view, .n_tables = 1, .n_threads = 1 };
    us_memory_backend be;
    us_memory_local_backend(&be, &local);
    if (us_model_set_backend(&model, &be, &err) != US_OK)
        return -1;
    snprintf(dir, sizeof dir, "/tmp/us_isess_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    us_model_free(&model);
    free(table);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

/* Runs one infer job of one session line; returns the generated tokens. */
static size_t run_job(const char *id, const char *prompt, int max_tokens, uint64_t fp,
                      int32_t *out)
{
    char line[512], out_path[256], sessions[256];
    snprintf(line, sizeof line, "{\"id\":\"%s\",\"session\":\"s\",\"prompt\":\"%s\","
             "\"max_tokens\":%d}\n", id, prompt, max_tokens);
    snprintf(out_path, sizeof out_path, "%s/%s.jsonl", dir, id);
    snprintf(sessions, sizeof sessions, "%s/sessions", dir);
    us_session_store store;
    us_session_store_dir(&store, sessions);
    us_prompt_set set;
    us_journal j;
    us_infer_stats st;
    us_err err = {0};
    assert_int_equal(us_prompts_parse(&set, line, strlen(line), "in",
                                      &(us_prompt_limits){ 8, 1000 }, &err), US_OK);
    assert_int_equal(us_journal_open(&j, out_path, &set, fp, &err), US_OK);
    us_infer_opts o = { .batch_size = 2, .batch_tokens = 8, .sampling = { 0.0f, 1.0f },
                        .sessions_dir = sessions, .sessions = &store,
                        .job_fingerprint = fp };
    us_infer_sink sink;
    us_infer_journal_sink(&j, &sink);
    assert_int_equal(us_infer_run(&model, &set, &sink, &o, &st, &err), US_OK);
    us_journal_close(&j);
    us_prompts_free(&set);
    FILE *f = fopen(out_path, "rb");
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    cJSON *o_line = cJSON_Parse(text);
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(o_line, "tokens");
    assert_true(cJSON_IsArray(toks));
    size_t k = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, toks)
        out[k++] = (int32_t)t->valuedouble;
    cJSON_Delete(o_line);
    return k;
}

/* Greedy continuation of `stream` by the model in one sequence. */
static size_t reference(const int32_t *stream, size_t n, int max_tokens, int32_t *out)
{
    const us_model_config *c = &model.cfg;
    us_err err = {0};
    us_workspace ws;
    us_seq_state s;
    assert_int_equal(us_workspace_init(&ws, c, c->segment_len, &err), US_OK);
    assert_int_equal(us_seq_state_init(&s, c, &err), US_OK);
    float logits[US_VOCAB_SIZE];
    for (size_t pos = 0; pos < n;) {
        size_t k = c->segment_len - s.seg_fill;
        k = k < n - pos ? k : n - pos;
        us_batch_item it = { &s, stream + pos, (uint32_t)k };
        assert_int_equal(us_model_forward(&model, &ws, &it, 1, logits, true, &err), US_OK);
        pos += k;
    }
    size_t g = 0;
    while ((int)g < max_tokens) {
        int best = -1;
        for (int v = 0; v < US_VOCAB_SIZE; v++)
            if (v != US_TOKEN_BOS && v != US_TOKEN_PAD && (best < 0 || logits[v] > logits[best]))
                best = v;
        if (best == US_TOKEN_EOS)
            break;
        out[g++] = best;
        us_batch_item it = { &s, &out[g - 1], 1 };
        assert_int_equal(us_model_forward(&model, &ws, &it, 1, logits, true, &err), US_OK);
    }
    us_seq_state_free(&s);
    us_workspace_free(&ws);
    return g;
}

static void test_two_jobs_equal_one_pass(void **state)
{
    (void)state;
    const char *p1 = "first part of a session, longer than a segment";
    const char *p2 = " and more";
    int32_t g1[64], g2[64], ref[64], stream[256];
    size_t n1 = run_job("j1", p1, 7, 1, g1);
    size_t n2 = run_job("j2", p2, 9, 2, g2);
    assert_true(n1 > 0);
    size_t n = 0;
    stream[n++] = US_TOKEN_BOS;
    for (size_t i = 0; p1[i]; i++)
        stream[n++] = (uint8_t)p1[i];
    for (size_t i = 0; i < n1; i++)
        stream[n++] = g1[i];
    for (size_t i = 0; p2[i]; i++)
        stream[n++] = (uint8_t)p2[i];
    size_t nr = reference(stream, n, 9, ref);
    assert_int_equal(n2, nr);
    assert_memory_equal(g2, ref, nr * sizeof(int32_t));
    /* and job 1 itself equals the one-pass continuation of BOS + p1 */
    size_t r1 = reference(stream, 1 + strlen(p1), 7, ref);
    assert_int_equal(r1, n1);
    assert_memory_equal(g1, ref, n1 * sizeof(int32_t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_jobs_equal_one_pass),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
