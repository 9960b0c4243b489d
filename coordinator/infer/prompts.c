/* prompts.c — JSONL prompt input, UTF-8 checks: see prompts.h. */
#include "coordinator/infer/prompts.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/durable.h"

#include "shard/session.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int us_utf8_valid(const uint8_t *s, size_t n, size_t *bad_offset)
{
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(s + i, n - i);
        if (len == 0) {
            if (bad_offset)
                *bad_offset = i;
            return 0;
        }
        i += len;
    }
    return 1;
}

size_t us_utf8_sanitize(char *out, const uint8_t *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(s + i, n - i);
        if (len == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);   /* U+FFFD */
            o += 3;
            i += 1;
        } else {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        }
    }
    out[o] = '\0';
    return o;
}

void us_prompts_free(us_prompt_set *set)
{
    for (size_t i = 0; i < set->count; i++) {
        free(set->items[i].id);
        free(set->items[i].bytes);
        free(set->items[i].session);
    }
    free(set->items);
    free(set->id_slots);
    memset(set, 0, sizeof *set);
}

long us_prompts_find(const us_prompt_set *set, const char *id)
{
    if (set->id_cap == 0)
        return -1;
    size_t h = us_fnv1a64(US_FNV1A64_INIT, id, strlen(id)) & (set->id_cap - 1);
    for (; set->id_slots[h] >= 0; h = (h + 1) & (set->id_cap - 1))
        if (strcmp(set->items[set->id_slots[h]].id, id) == 0)
            return set->id_slots[h];
    return -1;
}

/* An empty open-addressing table (-1 = free) for count keys: a power of two
 * at least twice count, so probes stay short. Returns: the table, or NULL. */
static long *new_slots(size_t count, size_t *cap_out)
{
    size_t cap = 16;
    while (cap < 2 * count)
        cap *= 2;
    long *slots = malloc(cap * sizeof *slots);
    for (size_t i = 0; slots != NULL && i < cap; i++)
        slots[i] = -1;
    *cap_out = cap;
    return slots;
}

/* One line per session: two lines of a file would race for its state. */
static int check_sessions(const us_prompt_set *set, const char *what, us_err *err)
{
    size_t cap;
    long *slots = new_slots(set->count, &cap);
    if (slots == NULL)
        return us_err_set(err, US_ENOMEM, "%s: out of memory", what);
    int rc = US_OK;
    for (size_t i = 0; i < set->count && rc == US_OK; i++) {
        const char *sid = set->items[i].session;
        if (sid == NULL)
            continue;
        size_t h = us_fnv1a64(US_FNV1A64_INIT, sid, strlen(sid)) & (cap - 1);
        for (; slots[h] >= 0 && rc == US_OK; h = (h + 1) & (cap - 1))
            if (strcmp(set->items[slots[h]].session, sid) == 0)
                rc = us_err_set(err, US_EINVAL, "%s:%zu: session \"%s\" is already used on line "
                                "%zu (one line per session per job)", what, set->items[i].line,
                                sid, set->items[slots[h]].line);
        slots[h] = (long)i;
    }
    free(slots);
    return rc;
}

/* Builds the id index and refuses duplicate ids (naming both lines). */
static int index_ids(us_prompt_set *set, const char *what, us_err *err)
{
    size_t cap;
    long *slots = new_slots(set->count, &cap);
    if (slots == NULL)
        return us_err_set(err, US_ENOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < set->count; i++) {
        const char *id = set->items[i].id;
        size_t h = us_fnv1a64(US_FNV1A64_INIT, id, strlen(id)) & (cap - 1);
        while (slots[h] >= 0) {
            const us_prompt *o = &set->items[slots[h]];
            if (strcmp(o->id, id) == 0) {
                free(slots);
                return us_err_set(err, US_EINVAL, "%s:%zu: duplicate id \"%s\" (first on line "
                                  "%zu)", what, set->items[i].line, id, o->line);
            }
            h = (h + 1) & (cap - 1);
        }
        slots[h] = (long)i;
    }
    set->id_slots = slots;
    set->id_cap = cap;
    return check_sessions(set, what, err);
}

/* True if the JSON text holds the escape \u0000 (an odd run of backslashes
 * followed by u0000; an even run is escaped backslashes). */
static int has_escaped_nul(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\')
            continue;
        size_t run = 0;
        while (i + run < n && s[i + run] == '\\')
            run++;
        i += run;
        if ((run & 1) && n - i >= 5 && memcmp(s + i, "u0000", 5) == 0)
            return 1;
        i--;
    }
    return 0;
}

/* Where a line is in its file, and the limits it is checked against. */
typedef struct line_ctx {
    const char *what;          /* the file, for messages */
    size_t lineno;             /* 1-based */
    const us_prompt_limits *lim;
} line_ctx;

/* JSON forbids raw control bytes (< 0x20) inside strings, and outside them
 * allows only tab, CR and LF as whitespace. cJSON accepts them anyway and
 * keeps C strings, so a raw NUL would silently cut the prompt short: refuse
 * the line, naming the byte and its 1-based column. */
static int check_control_bytes(const char *line, size_t len, const line_ctx *lc, us_err *err)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)line[i];
        if (in_string && b == '\\') {
            i++;   /* the escaped byte cannot end the string */
            if (i < len && (uint8_t)line[i] >= 0x20)
                continue;
            if (i == len)
                break;
            b = (uint8_t)line[i];
        } else if (b == '"') {
            in_string = !in_string;
            continue;
        }
        if (b >= 0x20 || (!in_string && (b == '\t' || b == '\r')))
            continue;
        if (b == 0)
            return us_err_set(err, US_EINVAL, "%s:%zu: raw NUL byte (0x00) at column %zu (JSON "
                              "text cannot hold it, and a prompt cannot hold a NUL at all)",
                              lc->what, lc->lineno, i + 1);
        return us_err_set(err, US_EINVAL, "%s:%zu: raw control byte 0x%02x at column %zu (JSON "
                          "needs it escaped as \\u%04x inside a string, and not at all outside)",
                          lc->what, lc->lineno, b, i + 1, b);
    }
    return US_OK;
}

/* The raw line: valid UTF-8 (JSON text is UTF-8), no raw control bytes. */
static int check_raw_line(const char *line, size_t len, const line_ctx *lc, us_err *err)
{
    size_t bad;
    if (!us_utf8_valid((const uint8_t *)line, len, &bad))
        return us_err_set(err, US_EINVAL, "%s:%zu: invalid UTF-8 at column %zu", lc->what,
                          lc->lineno, bad + 1);
    return check_control_bytes(line, len, lc, err);
}

/* Checks "id" and "prompt"; *n_prompt = the prompt's byte length. */
static int check_id_prompt(const cJSON *obj, const char *line, size_t len, const line_ctx *lc,
                           size_t *n_prompt, us_err *err)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    if (!cJSON_IsString(id) || id->valuestring[0] == '\0' ||
        strlen(id->valuestring) > US_PROMPT_ID_MAX)
        return us_err_set(err, US_EINVAL, "%s:%zu: \"id\" must be a non-empty string of at "
                          "most %d bytes", lc->what, lc->lineno, US_PROMPT_ID_MAX);
    if (!cJSON_IsString(prompt))
        return us_err_set(err, US_EINVAL, "%s:%zu: \"prompt\" must be a string", lc->what,
                          lc->lineno);
    /* cJSON keeps C strings, so an escaped NUL (\u0000) would silently cut
     * the prompt short: refuse it instead. */
    if (has_escaped_nul(line, len))
        return us_err_set(err, US_EINVAL, "%s:%zu: NUL character (\\u0000) in a string",
                          lc->what, lc->lineno);
    size_t n = strlen(prompt->valuestring), bad;
    if (n > lc->lim->max_prompt_bytes)
        return us_err_set(err, US_EINVAL, "%s:%zu: prompt of %zu bytes exceeds the limit of %zu "
                          "bytes (--max-prompt-bytes)", lc->what, lc->lineno, n,
                          lc->lim->max_prompt_bytes);
    if (!us_utf8_valid((const uint8_t *)prompt->valuestring, n, &bad))
        return us_err_set(err, US_EINVAL, "%s:%zu: \"prompt\" is not valid UTF-8 (byte %zu, "
                          "e.g. an unpaired \\u surrogate escape)", lc->what, lc->lineno, bad);
    *n_prompt = n;
    return US_OK;
}

/* Checks the optional "session" and "max_tokens" (default: the caller's). */
static int check_options(const cJSON *obj, const line_ctx *lc, uint32_t *max_tokens,
                         us_err *err)
{
    const cJSON *sess = cJSON_GetObjectItemCaseSensitive(obj, "session");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(obj, "max_tokens");
    us_err serr = {0};
    if (sess != NULL && (!cJSON_IsString(sess) ||
                         us_session_check_id(sess->valuestring, &serr) != US_OK))
        return us_err_set(err, US_EINVAL, "%s:%zu: \"session\": %s", lc->what, lc->lineno,
                          cJSON_IsString(sess) ? serr.msg : "must be a string");
    *max_tokens = lc->lim->default_max_tokens;
    if (mt != NULL) {
        if (!cJSON_IsNumber(mt) || mt->valuedouble != floor(mt->valuedouble) ||
            mt->valuedouble < 0 || mt->valuedouble > US_PROMPT_MAX_TOKENS)
            return us_err_set(err, US_EINVAL, "%s:%zu: \"max_tokens\" must be an integer in "
                              "[0, %d]", lc->what, lc->lineno, US_PROMPT_MAX_TOKENS);
        *max_tokens = (uint32_t)mt->valuedouble;
    }
    return US_OK;
}

static int parse_line(us_prompt *p, const char *line, size_t len, const line_ctx *lc,
                      us_err *err)
{
    int rc = check_raw_line(line, len, lc, err);
    if (rc != US_OK)
        return rc;
    cJSON *obj = cJSON_ParseWithLength(line, len);
    size_t n = 0;
    uint32_t max_tokens = 0;
    if (obj == NULL)
        return us_err_set(err, US_EINVAL, "%s:%zu: invalid JSON (syntax error, or a bad \\u "
                          "escape such as an unpaired surrogate)", lc->what, lc->lineno);
    if (!cJSON_IsObject(obj))
        rc = us_err_set(err, US_EINVAL, "%s:%zu: not a JSON object", lc->what, lc->lineno);
    if (rc == US_OK)
        rc = check_id_prompt(obj, line, len, lc, &n, err);
    if (rc == US_OK)
        rc = check_options(obj, lc, &max_tokens, err);
    if (rc != US_OK)
        goto done;
    const cJSON *sess = cJSON_GetObjectItemCaseSensitive(obj, "session");
    const char *prompt = cJSON_GetObjectItemCaseSensitive(obj, "prompt")->valuestring;
    p->id = strdup(cJSON_GetObjectItemCaseSensitive(obj, "id")->valuestring);
    p->bytes = malloc(n ? n : 1);
    p->session = sess ? strdup(sess->valuestring) : NULL;
    if (p->id == NULL || p->bytes == NULL || (sess && p->session == NULL)) {
        free(p->id);
        free(p->bytes);
        free(p->session);
        rc = us_err_set(err, US_ENOMEM, "%s:%zu: out of memory", lc->what, lc->lineno);
        goto done;
    }
    memcpy(p->bytes, prompt, n);
    p->n_bytes = n;
    p->max_tokens = max_tokens;
    p->line = lc->lineno;
done:
    cJSON_Delete(obj);
    return rc;
}

int us_prompts_parse(us_prompt_set *set, const char *data, size_t len, const char *what,
                     const us_prompt_limits *lim, us_err *err)
{
    memset(set, 0, sizeof *set);
    set->file_hash = us_fnv1a64(US_FNV1A64_INIT, data, len);
    size_t cap = 0, lineno = 0;
    int rc = US_OK;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        size_t line_len = end - pos;
        lineno++;
        if (line_len > 0 && data[pos + line_len - 1] == '\r')
            line_len--;
        size_t k = 0;
        while (k < line_len && (data[pos + k] == ' ' || data[pos + k] == '\t'))
            k++;
        if (k < line_len) {
            if (set->count == cap) {
                cap = cap ? 2 * cap : 64;
                us_prompt *ni = realloc(set->items, cap * sizeof *ni);
                if (ni == NULL) {
                    rc = us_err_set(err, US_ENOMEM, "%s: out of memory", what);
                    goto fail;
                }
                set->items = ni;
            }
            line_ctx lc = { what, lineno, lim };
            rc = parse_line(&set->items[set->count], data + pos, line_len, &lc, err);
            if (rc != US_OK)
                goto fail;
            set->count++;
        }
        pos = end + 1;
    }
    if ((rc = index_ids(set, what, err)) != US_OK)
        goto fail;
    return US_OK;
fail:
    us_prompts_free(set);
    return rc;
}

int us_prompts_load(us_prompt_set *set, const char *path, uint32_t default_max_tokens,
                    size_t max_prompt_bytes, us_err *err)
{
    memset(set, 0, sizeof *set);
    char *buf;
    size_t len;
    int rc = us_read_file(path, SIZE_MAX - 1, "prompt file", &buf, &len, err);
    if (rc != US_OK)
        return rc;
    us_prompt_limits lim = { default_max_tokens, max_prompt_bytes };
    rc = us_prompts_parse(set, buf, len, path, &lim, err);
    free(buf);
    return rc;
}
