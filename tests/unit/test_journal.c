/* test_journal.c — the output journal (journal.c): input-order commit, torn
 * records repaired, foreign journals refused, and a journal cut at every
 * byte offset reopens to exactly its complete records. */
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
#include "coordinator/infer/prompts.h"

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
    assert_int_equal(us_prompts_parse(&set, in, strlen(in), "in",
                                      &(us_prompt_limits){ 4, 100 }, &err), US_OK);
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
    assert_int_equal(us_prompts_parse(&set, in, strlen(in), "in",
                                      &(us_prompt_limits){ 4, 100 }, &err), US_OK);
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
        cmocka_unit_test(test_journal),
        cmocka_unit_test(test_journal_cut_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
