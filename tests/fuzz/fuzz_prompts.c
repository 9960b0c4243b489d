/*
 * fuzz_prompts.c — libFuzzer harness: JSONL prompt files through
 * us_prompts_parse (coordinator/infer/prompts.h).
 *
 * Checks what infer relies on after a file is accepted: every id is found
 * by the hash index at its own position, prompts respect the byte limit and
 * are valid UTF-8, line numbers increase, and on error the set is empty.
 */
#include "coordinator/infer/prompts.h"
#include "shard/session.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_PROMPT_BYTES 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    us_prompt_set set;
    us_err err = {0};
    us_prompt_limits lim = { .default_max_tokens = 16, .max_prompt_bytes = MAX_PROMPT_BYTES };
    int rc = us_prompts_parse(&set, (const char *)data, size, "prompts.jsonl", &lim, &err);
    fuzz_check_err(rc, &err);
    if (rc != US_OK) {
        FUZZ_CHECK(set.count == 0 && set.items == NULL, "error left %zu prompts", set.count);
        return 0;
    }
    for (size_t i = 0; i < set.count; i++) {
        const us_prompt *p = &set.items[i];
        FUZZ_CHECK(p->id != NULL && p->id[0] != '\0' && strlen(p->id) <= US_PROMPT_ID_MAX,
                   "prompt %zu: bad id", i);
        FUZZ_CHECK(us_prompts_find(&set, p->id) == (long)i, "id '%s' not found at %zu",
                   p->id, i);
        FUZZ_CHECK(p->n_bytes <= MAX_PROMPT_BYTES, "prompt %zu: %zu bytes", i, p->n_bytes);
        size_t bad = 0;
        FUZZ_CHECK(us_utf8_valid(p->bytes, p->n_bytes, &bad), "prompt %zu: invalid UTF-8 at %zu",
                   i, bad);
        FUZZ_CHECK(p->max_tokens <= US_PROMPT_MAX_TOKENS, "prompt %zu: max_tokens %u", i,
                   p->max_tokens);
        FUZZ_CHECK(i == 0 || p->line > set.items[i - 1].line, "prompt %zu: line order", i);
        FUZZ_CHECK(p->session == NULL || us_session_check_id(p->session, NULL) == US_OK,
                   "prompt %zu: bad session id '%s'", i, p->session);
    }
    FUZZ_CHECK(set.file_hash == us_fnv1a64(US_FNV1A64_INIT, data, size), "file hash");
    us_prompts_free(&set);
    return 0;
}
