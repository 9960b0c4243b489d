/* test_model_config.c — config.json (model_config.c): round trip, one broken
 * field at a time named in the message, and mutated files that never crash. */
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

#include "coordinator/model/model_config.h"
#include "coordinator/infer/sampler.h"

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

/* norm_eps is range-checked as the float the model uses (fuzz finding). */
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

static void test_config_mutations(void **state)
{
    (void)state;
    us_model_config c, out;
    us_err err = {0};
    assert_int_equal(us_model_config_preset(&c, "tiny", &err), US_OK);
    char *json = us_model_config_to_json(&c);
    size_t n = strlen(json);
    char *buf = malloc(n + 1);
    us_rng rng;
    us_rng_seed(&rng, 3, "config");
    for (int iter = 0; iter < 2000; iter++) {
        memcpy(buf, json, n + 1);
        size_t at = us_rng_next(&rng) % n;
        buf[at] = "0123456789-.e\"{}[],: x"[us_rng_next(&rng) % 23];
        us_err_clear(&err);
        int rc = us_model_config_parse(&out, buf, "cfg", &err);
        if (rc == US_OK)   /* whatever parses must still validate */
            assert_int_equal(us_model_config_validate(&out, "cfg", &err), US_OK);
        else
            assert_non_null(strstr(err.msg, "cfg"));
    }
    free(buf);
    free(json);
}

/* Replaces the first `from` in json with `to` (a new string; json freed). */
static char *edit(char *json, const char *from, const char *to)
{
    char *p = strstr(json, from);
    if (p == NULL)
        fail_msg("'%s' not in the config", from);
    size_t cap = strlen(json) + strlen(to) + 1;
    char *out = malloc(cap);
    assert_non_null(out);
    snprintf(out, cap, "%.*s%s%s", (int)(p - json), json, to, p + strlen(from));
    free(json);
    return out;
}

/* The variant keys: defaults when absent, both query_norm spellings, the
 * string form written back, and each bad value refused naming its field. */
static void test_config_variants(void **state)
{
    (void)state;
    us_model_config a, b;
    us_err err = {0};
    assert_int_equal(us_model_config_preset(&a, "tiny", &err), US_OK);
    assert_true(a.rope_theta == 0.0f && a.memory.score == US_MEM_SCORE_TDQKR &&
                a.memory.tucker_cores == 1 && a.memory.query_norm == US_QNORM_LAYERNORM &&
                !a.memory.output_gate);
    char *json = us_model_config_to_json(&a);
    assert_non_null(strstr(json, "\"query_norm\":\t\"layernorm\""));
    /* a config from before the variants: no new keys, boolean query_norm */
    char *old = edit(strdup(json), "\"query_norm\":\t\"layernorm\",", "\"query_norm\": true,");
    old = edit(old, "\"score\":\t\"tdqkr\",", "");
    old = edit(old, "\"tucker_cores\":\t1,", "");
    old = edit(old, "\"output_gate\":\tfalse", "\"weights\": \"softmax\"");
    old = edit(old, "\"rope_theta\":\t0,", "");
    assert_int_equal(us_model_config_parse(&b, old, "old", &err), US_OK);
    assert_true(memcmp(&a, &b, sizeof a) == 0);
    old = edit(old, "\"query_norm\": true", "\"query_norm\": false");
    assert_int_equal(us_model_config_parse(&b, old, "old", &err), US_OK);
    assert_int_equal(b.memory.query_norm, US_QNORM_NONE);
    old = edit(old, "\"query_norm\": false,", "");   /* absent: none, as before */
    assert_int_equal(us_model_config_parse(&b, old, "old", &err), US_OK);
    assert_int_equal(b.memory.query_norm, US_QNORM_NONE);
    free(old);
    /* every variant on: parsed, and written back to the same config */
    char *v = edit(strdup(json), "\"rope_theta\":\t0", "\"rope_theta\": 10000");
    v = edit(v, "\"query_norm\":\t\"layernorm\"", "\"query_norm\": \"l2\"");
    v = edit(v, "\"tucker_cores\":\t1", "\"tucker_cores\": 2");
    v = edit(v, "\"output_gate\":\tfalse", "\"output_gate\": true");
    assert_int_equal(us_model_config_parse(&a, v, "v", &err), US_OK);
    assert_true(a.rope_theta == 10000.0f && a.memory.tucker_cores == 2 &&
                a.memory.query_norm == US_QNORM_L2 && a.memory.output_gate == 1);
    assert_int_equal(us_model_config_lookup_pairs(&a), 2 * 4 * 2);
    assert_int_equal(us_model_config_lookup_groups(&a), 4 * 2);
    char *back = us_model_config_to_json(&a);
    assert_int_equal(us_model_config_parse(&b, back, "back", &err), US_OK);
    assert_true(memcmp(&a, &b, sizeof a) == 0);
    free(back);
    char *pkm = edit(strdup(json), "\"score\":\t\"tdqkr\"", "\"score\": \"pkm\"");
    pkm = edit(pkm, "\"tucker_rank\":\t2", "\"tucker_rank\": 1");
    assert_int_equal(us_model_config_parse(&b, pkm, "pkm", &err), US_OK);
    assert_int_equal(b.memory.score, US_MEM_SCORE_PKM);
    free(pkm);
    struct { const char *from, *to, *want, *from2, *to2; } bad[] = {
        { "\"score\":\t\"tdqkr\"", "\"score\": \"pkm\"", "'memory.score' \"pkm\" needs "
          "tucker_rank 1 and tucker_cores 1 (got 2 and 1)", NULL, NULL },
        { "\"score\":\t\"tdqkr\"", "\"score\": \"sum\"", "'memory.score' must be", NULL, NULL },
        { "\"query_norm\":\t\"layernorm\"", "\"query_norm\": \"rms\"",
          "'memory.query_norm' must be", NULL, NULL },
        { "\"tucker_cores\":\t1", "\"tucker_cores\": 3", "'memory.tucker_cores' = 3 must "
          "divide v_dim 32", NULL, NULL },
        { "\"tucker_cores\":\t1", "\"tucker_cores\": 0", "'tucker_cores' = 0 is outside", NULL, NULL },
        { "\"tucker_cores\":\t1", "\"tucker_cores\": 4", "'memory.tucker_cores' = 4 times "
          "ive_groups 64 exceeds 255 lookup groups", "\"ive_groups\":\t4", "\"ive_groups\": 64" },
        { "\"output_gate\":\tfalse", "\"output_gate\": 1", "'memory.output_gate' must be", NULL, NULL },
        { "\"rope_theta\":\t0", "\"rope_theta\": -1", "'rope_theta' must be", NULL, NULL },
        { "\"rope_theta\":\t0", "\"rope_theta\": \"big\"", "'rope_theta' must be", NULL, NULL },
        { "\"head_dim\":\t32", "\"head_dim\": 33", "'rope_theta' needs an even head_dim "
          "(head_dim 33)", "\"rope_theta\":\t0", "\"rope_theta\": 10000.5" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *t = edit(strdup(json), bad[i].from, bad[i].to);
        if (bad[i].from2 != NULL)
            t = edit(t, bad[i].from2, bad[i].to2);
        us_err_clear(&err);
        assert_int_equal(us_model_config_parse(&b, t, "m/config.json", &err), US_EINVAL);
        if (strstr(err.msg, bad[i].want) == NULL || strstr(err.msg, "m/config.json") == NULL)
            fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, bad[i].want);
        free(t);
    }
    free(v);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_roundtrip),
        cmocka_unit_test(test_config_mutations),
        cmocka_unit_test(test_config_norm_eps_float_range),
        cmocka_unit_test(test_config_variants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
