/*
 * fuzz_journal.c — libFuzzer harness: the infer journal (coordinator/infer/
 * journal.h) as us_journal_open finds it after a crash.
 *
 * The job is fixed: three prompts with ids "a", "b", "c" and one
 * fingerprint. The input is the journal's body; the harness writes the
 * header that job expects in front of it, so mutations reach the record
 * parser (an input starting with '!' is written as the whole file instead,
 * to fuzz the header check). When the journal opens, the harness checks
 * that OUT holds exactly the committed prefix, finishes one more sequence,
 * and reopens: a journal this build accepted and appended to must be
 * accepted again by a restart, with that sequence counted as done.
 */
#include <inttypes.h>
#include <limits.h>
#include <sys/stat.h>

#include "coordinator/infer/journal.h"
#include "tests/fuzz/fuzz_util.h"

#define FUZZ_FINGERPRINT UINT64_C(0x0123456789abcdef)
static const char prompts_jsonl[] =
    "{\"id\": \"a\", \"prompt\": \"one\"}\n"
    "{\"id\": \"b\", \"prompt\": \"two\", \"max_tokens\": 3}\n"
    "{\"id\": \"c\", \"prompt\": \"three\"}\n";

static size_t count_lines(const char *path)
{
    FILE *f = fopen(path, "rb");
    FUZZ_CHECK(f != NULL, "%s missing after open", path);
    size_t n = 0;
    int c, last = '\n';
    while ((c = fgetc(f)) != EOF) {
        n += c == '\n';
        last = c;
    }
    fclose(f);
    FUZZ_CHECK(last == '\n', "%s ends with a torn line", path);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static us_prompt_set set;
    static int have_set;
    us_err err = {0};
    if (!have_set) {
        us_prompt_limits lim = { .default_max_tokens = 8, .max_prompt_bytes = 1024 };
        int rc = us_prompts_parse(&set, prompts_jsonl, sizeof prompts_jsonl - 1, "prompts",
                                  &lim, &err);
        FUZZ_CHECK(rc == US_OK, "fixed prompts: %s", err.msg);
        have_set = 1;
    }
    char out[PATH_MAX], journal[PATH_MAX + 16], header[160];
    snprintf(out, sizeof out, "%s/out.jsonl", fuzz_dir());
    snprintf(journal, sizeof journal, "%s.journal", out);
    unlink(out);
    int hlen = snprintf(header, sizeof header, "{\"ultrashard_journal\":1,\"fingerprint\":"
                        "\"%016" PRIx64 "\",\"sequences\":%zu}\n", FUZZ_FINGERPRINT,
                        set.count);
    if (size > 0 && data[0] == '!')
        fuzz_write_file(journal, data + 1, size - 1);
    else
        fuzz_write_file2(journal, header, (size_t)hlen, data, size);

    us_journal j;
    int rc = us_journal_open(&j, out, &set, FUZZ_FINGERPRINT, &err);
    fuzz_check_err(rc, &err);
    if (rc != US_OK)
        return 0;
    FUZZ_CHECK(j.n == set.count && j.n_done <= j.n && j.next_commit <= j.n_done,
               "counts n %zu done %zu committed %zu", j.n, j.n_done, j.next_commit);
    FUZZ_CHECK(count_lines(out) == j.next_commit, "OUT has %zu lines, %zu committed",
               count_lines(out), j.next_commit);
    size_t done_before = j.n_done;
    size_t next = 0;
    while (next < j.n && us_journal_is_done(&j, next))
        next++;
    if (next < j.n) {
        char line[64];
        snprintf(line, sizeof line, "{\"id\": \"%s\", \"text\": \"x\"}", set.items[next].id);
        rc = us_journal_finish(&j, next, line, &err);
        FUZZ_CHECK(rc == US_OK, "finish %zu: %s", next, err.msg);
        done_before++;
    }
    us_journal_close(&j);

    rc = us_journal_open(&j, out, &set, FUZZ_FINGERPRINT, &err);
    FUZZ_CHECK(rc == US_OK, "restart refused a journal this build wrote: %s", err.msg);
    FUZZ_CHECK(j.n_resumed == done_before, "restart resumed %zu of %zu done", j.n_resumed,
               done_before);
    FUZZ_CHECK(count_lines(out) == j.next_commit, "OUT after restart");
    us_journal_close(&j);
    return 0;
}
