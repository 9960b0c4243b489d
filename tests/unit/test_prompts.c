/* test_prompts.c — the JSONL prompt reader (prompts.c): UTF-8 checks, field
 * rules named by line, raw control bytes named by column, and mutated input
 * that never crashes and always names a line. */
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

#include "coordinator/infer/prompts.h"
#include "coordinator/infer/sampler.h"

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
    assert_int_equal(us_prompts_parse(&set, ok, strlen(ok), "in",
                                      &(us_prompt_limits){ 7, 100 }, &err), US_OK);
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
    assert_int_equal(us_prompts_parse(&set, ok, strlen(ok), "in",
                                      &(us_prompt_limits){ 7, 100 }, &err), US_OK);
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
        assert_int_equal(us_prompts_parse(&set, bad[i].text, strlen(bad[i].text), "in",
                                          &(us_prompt_limits){ 7, 10 }, &err), US_EINVAL);
        if (strstr(err.msg, bad[i].want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].want);
        assert_int_equal(set.count, 0);
    }
}

static const char *good =
    "{\"id\":\"a\",\"prompt\":\"hello \\u00e9\",\"max_tokens\":3}\n"
    "{\"id\":\"b\",\"prompt\":\"x\",\"session\":\"s1\"}\n"
    "\n"
    "{\"id\":\"c\",\"prompt\":\"\\\\u0000 is text\",\"max_tokens\":0}\n";

static void test_prompt_mutations(void **state)
{
    (void)state;
    us_prompt_set set;
    us_err err = {0};
    size_t n = strlen(good);
    assert_int_equal(us_prompts_parse(&set, good, n, "in",
                                      &(us_prompt_limits){ 5, 64 }, &err), US_OK);
    assert_int_equal(set.count, 3);
    assert_string_equal(set.items[1].session, "s1");
    assert_int_equal(set.items[2].line, 4);
    us_prompts_free(&set);
    us_rng rng;
    us_rng_seed(&rng, 7, "mutations");
    char *buf = malloc(n + 8);
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, good, n);
        int edits = 1 + (int)(us_rng_next(&rng) % 3);
        for (int e = 0; e < edits; e++) {
            size_t at = us_rng_next(&rng) % n;
            switch (us_rng_next(&rng) % 3) {
            case 0: buf[at] = (char)(us_rng_next(&rng) & 0xff); break;   /* any byte */
            case 1: buf[at] = "{}\":,\\\n u0"[us_rng_next(&rng) % 11]; break;
            default: memmove(buf + at, buf + at + 1, n - at - 1); buf[n - 1] = ' '; break;
            }
        }
        us_err_clear(&err);
        int rc = us_prompts_parse(&set, buf, n, "in", &(us_prompt_limits){ 5, 64 }, &err);
        if (rc == US_OK) {
            ok++;
            for (size_t i = 0; i < set.count; i++)
                assert_true(us_utf8_valid(set.items[i].bytes, set.items[i].n_bytes, NULL));
            us_prompts_free(&set);
        } else {
            bad++;
            assert_int_equal(rc, US_EINVAL);
            assert_int_equal(set.count, 0);
            if (strncmp(err.msg, "in:", 3) != 0)   /* every error names a line */
                fail_msg("iteration %d: message without line: %s", iter, err.msg);
        }
    }
    assert_true(ok > 0 && bad > 0);   /* both outcomes were exercised */
    free(buf);
}

/* A raw control byte is refused with its line and 1-based column: a raw NUL
 * used to cut the prompt short silently (cJSON keeps C strings). Escaped
 * forms stay text; tab and CR between tokens stay JSON whitespace. */
static void test_raw_control_bytes(void **state)
{
    (void)state;
    us_prompt_set set;
    us_err err = {0};
    const us_prompt_limits lim = { 4, 100 };
    static const char nul[] = "{\"id\":\"a\",\"prompt\":\"x\"}\n"
                              "{\"id\":\"n\",\"prompt\":\"nul\0inside\"}\n";
    assert_int_equal(us_prompts_parse(&set, nul, sizeof nul - 1, "p.jsonl", &lim, &err),
                     US_EINVAL);
    assert_string_equal(err.msg, "p.jsonl:2: raw NUL byte (0x00) at column 24 (JSON text "
                        "cannot hold it, and a prompt cannot hold a NUL at all)");
    assert_int_equal(set.count, 0);
    const struct { const char *text; size_t len; const char *want; } bad[] = {
        { "{\"id\":\"a\",\"prompt\":\"a\tb\"}", 25, "in:1: raw control byte 0x09 at column 22" },
        { "{\"id\":\"a\",\"prompt\":\"a\x01\"}", 24, "in:1: raw control byte 0x01 at column 22" },
        { "{\"id\":\"a\",\"prompt\":\"\\\x1f\"}", 24, "in:1: raw control byte 0x1f at column 22" },
        { "{\"id\":\"a\",\x02\"prompt\":\"b\"}", 24, "in:1: raw control byte 0x02 at column 11" },
        { "{\"id\":\"a\0\",\"prompt\":\"b\"}", 24, "in:1: raw NUL byte (0x00) at column 9" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        us_err_clear(&err);
        assert_int_equal(us_prompts_parse(&set, bad[i].text, bad[i].len, "in", &lim, &err),
                         US_EINVAL);
        if (strstr(err.msg, bad[i].want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].want);
    }
    /* escaped control characters are text; tab and CR outside strings are spacing */
    const char *ok = "{\"id\":\t\"a\",\r\"prompt\":\"t\\tn\\n\\\"q\\u0001\"}";
    assert_int_equal(us_prompts_parse(&set, ok, strlen(ok), "in", &lim, &err), US_OK);
    assert_int_equal(set.count, 1);
    assert_int_equal(set.items[0].n_bytes, 7);
    assert_memory_equal(set.items[0].bytes, "t\tn\n\"q\x01", 7);
    us_prompts_free(&set);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_prompts_parse),
        cmocka_unit_test(test_prompt_mutations),
        cmocka_unit_test(test_raw_control_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
