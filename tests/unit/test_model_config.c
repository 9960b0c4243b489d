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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_roundtrip),
        cmocka_unit_test(test_config_mutations),
        cmocka_unit_test(test_config_norm_eps_float_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
