/* test_session.c — durable, versioned session states: round trip, generations,
 * damage fallback, bad ids and shapes, full disk leaves the previous state. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/tmpdir.h"

#include "shard/durable.h"
#include "shard/session.h"

#define tmpdir us_test_tmpdir

static void fill(us_session_state *s, float base)
{
    size_t nm = (size_t)s->layers * s->heads * s->d_key * s->d_value;
    size_t nz = (size_t)s->layers * s->heads * s->d_key;
    for (size_t i = 0; i < nm; i++)
        s->memory[i] = base + (float)i * 0.25f;
    for (size_t i = 0; i < nz; i++)
        s->norm[i] = base - (float)i;
}

static void gen_file(char *out, size_t n, const char *id, uint64_t g)
{
    snprintf(out, n, "%s/sessions/%s/gen-%020llu.pb", tmpdir, id, (unsigned long long)g);
}

static void test_roundtrip_and_generations(void **state)
{
    (void)state;
    us_session_state s, got;
    us_err e = {0};
    assert_int_equal(us_session_init(&s, "doc-1", 2, 3, 4, 5, &e), US_OK);
    fill(&s, 1.0f);
    s.tokens_seen = 77;
    s.extra = malloc(3);
    memcpy(s.extra, "abc", 3);
    s.extra_bytes = 3;
    assert_int_equal(us_session_save(tmpdir, &s, &e), US_OK);
    assert_int_equal(s.generation, 1);
    assert_int_equal(us_session_load(tmpdir, "doc-1", &got, NULL, 0, &e), US_OK);
    assert_int_equal(got.generation, 1);
    assert_int_equal(got.tokens_seen, 77);
    assert_memory_equal(got.memory, s.memory, 2 * 3 * 4 * 5 * sizeof(float));
    assert_memory_equal(got.norm, s.norm, 2 * 3 * 4 * sizeof(float));
    assert_int_equal(got.extra_bytes, 3);
    assert_memory_equal(got.extra, "abc", 3);
    assert_int_equal(us_session_check_shape(&got, 2, 3, 4, 5, &e), US_OK);
    assert_int_equal(us_session_check_shape(&got, 2, 3, 4, 6, &e), US_EINVAL);
    assert_non_null(strstr(e.msg, "doc-1"));
    us_session_free(&got);

    /* three more saves: generations 2..4, only the newest two files remain */
    for (int i = 0; i < 3; i++) {
        fill(&s, 10.0f + (float)i);
        assert_int_equal(us_session_save(tmpdir, &s, &e), US_OK);
    }
    assert_int_equal(s.generation, 4);
    char p[512];
    struct stat st;
    gen_file(p, sizeof p, "doc-1", 4);
    assert_int_equal(stat(p, &st), 0);
    gen_file(p, sizeof p, "doc-1", 3);
    assert_int_equal(stat(p, &st), 0);
    gen_file(p, sizeof p, "doc-1", 2);
    assert_int_not_equal(stat(p, &st), 0);
    assert_int_equal(us_session_load(tmpdir, "doc-1", &got, NULL, 0, &e), US_OK);
    assert_int_equal(got.generation, 4);
    assert_true(got.memory[0] == 12.0f);
    us_session_free(&got);
    us_session_free(&s);
}

static void test_damaged_newest_falls_back(void **state)
{
    (void)state;
    us_session_state s, got;
    us_err e = {0};
    assert_int_equal(us_session_init(&s, "dmg", 1, 1, 2, 2, &e), US_OK);
    fill(&s, 3.0f);
    assert_int_equal(us_session_save(tmpdir, &s, &e), US_OK);
    fill(&s, 5.0f);
    assert_int_equal(us_session_save(tmpdir, &s, &e), US_OK);
    /* flip one byte of a float in generation 2: checksum must catch it */
    char p[512];
    gen_file(p, sizeof p, "dmg", 2);
    FILE *fp = fopen(p, "r+b");
    assert_non_null(fp);
    fseek(fp, -8, SEEK_END);
    int c = fgetc(fp);
    fseek(fp, -8, SEEK_END);
    fputc(c ^ 0x40, fp);
    fclose(fp);
    char note[600];
    assert_int_equal(us_session_load(tmpdir, "dmg", &got, note, sizeof note, &e), US_OK);
    assert_int_equal(got.generation, 1);
    assert_true(got.memory[0] == 3.0f);
    assert_non_null(strstr(note, "gen-00000000000000000002.pb"));
    us_session_free(&got);
    /* truncate generation 1 too: now every generation is damaged */
    gen_file(p, sizeof p, "dmg", 1);
    assert_int_equal(truncate(p, 10), 0);
    assert_int_equal(us_session_load(tmpdir, "dmg", &got, NULL, 0, &e), US_ECORRUPT);
    assert_non_null(strstr(e.msg, "dmg"));
    us_session_free(&s);
}

static void test_bad_ids_and_missing(void **state)
{
    (void)state;
    us_session_state s, got;
    us_err e = {0};
    assert_int_equal(us_session_init(&s, "../etc", 1, 1, 1, 1, &e), US_EINVAL);
    assert_int_equal(us_session_init(&s, "", 1, 1, 1, 1, &e), US_EINVAL);
    assert_int_equal(us_session_init(&s, "a/b", 1, 1, 1, 1, &e), US_EINVAL);
    assert_non_null(strstr(e.msg, "0x2f"));
    assert_int_equal(us_session_init(&s, "ok", 0, 1, 1, 1, &e), US_EINVAL);
    assert_int_equal(us_session_load(tmpdir, "never-saved", &got, NULL, 0, &e), US_ENOTFOUND);
    /* owner is a pure function, in range, spreads ids */
    int hits[4] = {0};
    char id[32];
    for (int i = 0; i < 4000; i++) {
        snprintf(id, sizeof id, "s%d", i);
        int o = us_session_owner(id, 7, 4);
        assert_true(o >= 0 && o < 4);
        assert_int_equal(o, us_session_owner(id, 7, 4));
        hits[o]++;
    }
    for (int i = 0; i < 4; i++)
        assert_in_range(hits[i], 850, 1150);
}

static void test_full_disk_keeps_previous(void **state)
{
    (void)state;
    us_session_state s;
    us_err e = {0};
    assert_int_equal(us_session_init(&s, "big", 1, 2, 64, 64, &e), US_OK);
    fill(&s, 1.0f);
    assert_int_equal(us_session_save(tmpdir, &s, &e), US_OK);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* child: a 4 KiB file size limit makes the next save fail with EFBIG */
        us_durable_ignore_sigxfsz();
        struct rlimit rl = { 4096, 4096 };
        setrlimit(RLIMIT_FSIZE, &rl);
        fill(&s, 9.0f);
        us_err ce = {0};
        int rc = us_session_save(tmpdir, &s, &ce);
        _exit(rc == US_EIO && strstr(ce.msg, "file size limit") && s.generation == 1 ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    us_session_state got;
    assert_int_equal(us_session_load(tmpdir, "big", &got, NULL, 0, &e), US_OK);
    assert_int_equal(got.generation, 1);
    assert_true(got.memory[5] == 1.0f + 5 * 0.25f);
    us_session_free(&got);
    us_session_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_generations),
        cmocka_unit_test(test_damaged_newest_falls_back),
        cmocka_unit_test(test_bad_ids_and_missing),
        cmocka_unit_test(test_full_disk_keeps_previous),
    };
    return cmocka_run_group_tests(tests, us_test_tmpdir_setup, us_test_tmpdir_teardown);
}
