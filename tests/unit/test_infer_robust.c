/* test_infer_robust.c — property tests of the infer inputs and journal:
 * mutated JSONL never crashes and always names a line; a journal cut at
 * every byte offset reopens to exactly its complete records. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "coordinator/infer/journal.h"
#include "coordinator/model/model_config.h"
#include "coordinator/infer/prompts.h"
#include "coordinator/infer/sampler.h"

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
    assert_int_equal(us_prompts_parse(&set, good, n, "in", &(us_prompt_limits){ 5, 64 }, &err), US_OK);
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

static void test_journal_cut_everywhere(void **state)
{
    (void)state;
    char dir[] = "/tmp/us_jcut_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[256], jpath[300], lock[300], full[300];
    snprintf(out, sizeof out, "%s/o.jsonl", dir);
    snprintf(jpath, sizeof jpath, "%s.journal", out);
    snprintf(lock, sizeof lock, "%s.lock", out);
    snprintf(full, sizeof full, "%s/full.journal", dir);
    const char *in = "{\"id\":\"a\",\"prompt\":\"1\"}\n{\"id\":\"b\",\"prompt\":\"2\"}\n"
                     "{\"id\":\"c\",\"prompt\":\"3\"}\n{\"id\":\"d\",\"prompt\":\"4\"}\n";
    us_prompt_set set;
    us_err err = {0};
    assert_int_equal(us_prompts_parse(&set, in, strlen(in), "in", &(us_prompt_limits){ 4, 100 }, &err), US_OK);
    us_journal j;
    assert_int_equal(us_journal_open(&j, out, &set, 7, &err), US_OK);
    const char *recs[4] = { "{\"id\":\"c\",\"v\":1}", "{\"id\":\"a\",\"v\":2}",
                            "{\"id\":\"d\",\"v\":3}", "{\"id\":\"b\",\"v\":4}" };
    const size_t order[4] = { 2, 0, 3, 1 };
    for (int i = 0; i < 4; i++)
        assert_int_equal(us_journal_finish(&j, order[i], recs[i], &err), US_OK);
    us_journal_close(&j);
    assert_int_equal(rename(jpath, full), 0);
    FILE *f = fopen(full, "rb");
    char data[4096];
    size_t len = fread(data, 1, sizeof data, f);
    fclose(f);
    size_t header = (size_t)(strchr(data, '\n') - data) + 1;
    for (size_t cut = 0; cut <= len; cut++) {
        f = fopen(jpath, "wb");
        fwrite(data, 1, cut, f);
        fclose(f);
        unlink(out);   /* OUT is rebuilt from the journal */
        us_err_clear(&err);
        assert_int_equal(us_journal_open(&j, out, &set, 7, &err), US_OK);
        size_t complete = 0;   /* records whose newline survived the cut */
        for (size_t p = header; p < cut; p++)
            complete += data[p] == '\n';
        if (cut < header)
            complete = 0;
        assert_int_equal(j.n_done, complete);
        /* OUT holds the finished prefix in input order: a, b, c, d */
        size_t prefix = 0;
        while (prefix < 4 && us_journal_is_done(&j, prefix))
            prefix++;
        assert_int_equal(j.next_commit, prefix);
        us_journal_close(&j);
        f = fopen(out, "rb");
        char o[1024] = "";
        size_t ol = fread(o, 1, sizeof o - 1, f);
        fclose(f);
        o[ol] = 0;
        size_t lines = 0;
        for (size_t p = 0; p < ol; p++)
            lines += o[p] == '\n';
        assert_int_equal(lines, prefix);
        if (prefix >= 1)
            assert_memory_equal(o, "{\"id\":\"a\",\"v\":2}\n", 17);
    }
    unlink(jpath);
    unlink(out);
    unlink(lock);
    unlink(full);
    rmdir(dir);
    us_prompts_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_mutations),
        cmocka_unit_test(test_config_mutations),
        cmocka_unit_test(test_journal_cut_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
