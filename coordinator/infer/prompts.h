/*
 * prompts.h — the input of batch inference: a JSONL file of prompts.
 *
 * One JSON object per line:
 *   {"id": "a", "prompt": "text", "max_tokens": 32}
 * id: non-empty string of at most US_PROMPT_ID_MAX bytes, unique in the file;
 * prompt: string, valid UTF-8, at most max_prompt_bytes bytes after JSON
 * unescaping; max_tokens: optional integer in [0, US_PROMPT_MAX_TOKENS]
 * (default: the caller's); session: optional session id (shard/session.h
 * rules), at most one line per session in a file, continuing that session's
 * stored Infini-attention state. Blank lines are skipped. The whole file is checked
 * before any decoding starts, and the first bad line is reported as
 * "FILE:LINE: what is wrong" (US_EINVAL), so a bad input costs no compute and
 * touches no output. The raw bytes of each line must be valid UTF-8 too
 * (JSON text is UTF-8) and hold no raw control byte (< 0x20) that JSON
 * forbids: none inside strings, only tab and CR outside; such a byte is
 * reported with its column. A NUL is refused raw or escaped (\u0000), since
 * prompts are kept as C strings while parsing.
 *
 * The set also keeps a 64-bit FNV-1a hash of the file bytes, which the
 * journal uses to recognise "the same command" on restart.
 */
#ifndef US_PROMPTS_H
#define US_PROMPTS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/hash.h"        /* us_fnv1a64: file_hash and id lookups */
#include "kernels/us_status.h"

#define US_PROMPT_ID_MAX 256
#define US_PROMPT_MAX_TOKENS 1000000

typedef struct us_prompt {
    char    *id;           /* NUL-terminated, owned */
    char    *session;      /* session id or NULL, owned */
    uint8_t *bytes;        /* prompt bytes (UTF-8), owned */
    size_t   n_bytes;
    uint32_t max_tokens;
    size_t   line;         /* 1-based line number in the input file */
} us_prompt;

typedef struct us_prompt_set {
    us_prompt *items;
    size_t     count;
    uint64_t   file_hash;  /* FNV-1a 64 of the input file bytes */
    long      *id_slots;   /* open-addressing index of ids -> item, owned */
    size_t     id_cap;     /* power of two */
} us_prompt_set;

/* What a prompt line may hold: lines without max_tokens get
 * default_max_tokens; a prompt longer than max_prompt_bytes is refused. */
typedef struct us_prompt_limits {
    uint32_t default_max_tokens;
    size_t   max_prompt_bytes;
} us_prompt_limits;

/* Reads and validates `path`. default_max_tokens applies to lines without
 * max_tokens. On error *set is empty.
 * Returns: US_OK; US_ENOTFOUND or US_EIO for the file; US_EINVAL naming the
 * first bad line ("FILE:LINE: ..."); US_ENOMEM. */
int us_prompts_load(us_prompt_set *set, const char *path, uint32_t default_max_tokens,
                    size_t max_prompt_bytes, us_err *err);

/* Same over a buffer; `what` names it in messages.
 * Returns: US_OK; US_EINVAL naming the first bad line; US_ENOMEM. On error
 * *set is empty. */
int us_prompts_parse(us_prompt_set *set, const char *data, size_t len, const char *what,
                     const us_prompt_limits *lim, us_err *err);

/* Frees everything the set owns and empties it. Returns: nothing. */
void us_prompts_free(us_prompt_set *set);

/* Returns: the index of the prompt with this id, or -1 when there is none
 * (hash lookup). */
long us_prompts_find(const us_prompt_set *set, const char *id);

/* UTF-8 validity (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
 * Returns: 1 if valid, else 0 with *bad_offset = offset of the first bad byte. */
int us_utf8_valid(const uint8_t *s, size_t n, size_t *bad_offset);

/* Copies s to out as valid UTF-8, each invalid byte replaced by U+FFFD.
 * out must hold 3 * n + 1 bytes.
 * Returns: the length written (a NUL is added after it). */
size_t us_utf8_sanitize(char *out, const uint8_t *s, size_t n);

#endif
