/*
 * tensorfile.c — .npy and safetensors headers, pread of row ranges, and a
 * crash-safe streaming writer (see tensorfile.h for the accepted formats).
 */
#include "shard/tensorfile.h"

#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_BYTES 6
#define ST_MAX_HEADER_BYTES (100ull << 20)
#define JSON_MAX_EXACT 9007199254740992.0 /* 2^53 */

struct us_tensor_file {
    char          *path;
    int            fd;
    us_tf_format   format;
    uint64_t       file_bytes;
    size_t         n;
    us_tensor_info *tensors;   /* sorted by offset */
    char          **names;     /* owned names, parallel to tensors */
};

size_t us_tf_dtype_size(us_dtype dtype)
{
    return us_dtype_size(dtype);
}

const char *us_tf_safetensors_dtype(us_dtype dtype)
{
    switch (dtype) {
    case US_DTYPE_F32:  return "F32";
    case US_DTYPE_F16:  return "F16";
    case US_DTYPE_BF16: return "BF16";
    case US_DTYPE_INT8: return "I8";
    }
    return NULL;
}

/* product of dims * elem, with overflow check; returns false on overflow */
static bool shape_bytes(const uint64_t *shape, int ndim, size_t elem, uint64_t *out)
{
    uint64_t total = elem;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] != 0 && total > UINT64_MAX / shape[i])
            return false;
        total *= shape[i];
    }
    *out = total;
    return true;
}

static void finish_info(us_tensor_info *t)
{
    t->rows = t->ndim == 0 ? 1 : t->shape[0];
    t->row_bytes = t->rows == 0 ? 0 : t->nbytes / t->rows;
}

/* ------------------------------------------------------------------ npy */

/* Minimal parser for the npy header: a Python dict literal with the keys
 * 'descr' (string), 'fortran_order' (True/False), 'shape' (tuple of ints). */
typedef struct npy_cursor {
    const char *p, *end;
} npy_cursor;

static void npy_skip_ws(npy_cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool npy_eat(npy_cursor *c, char ch)
{
    npy_skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string into out (NUL-terminated) and *len: its length, which a
 * caller compares too, since the string itself may hold NUL bytes. */
static bool npy_string(npy_cursor *c, char *out, size_t cap, size_t *len)
{
    npy_skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (n + 1 >= cap)
            return false;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return false;
    c->p++;
    out[n] = '\0';
    *len = n;
    return true;
}

static bool npy_uint(npy_cursor *c, uint64_t *out)
{
    npy_skip_ws(c);
    uint64_t v = 0;
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        c->p++;
    }
    if (c->p < c->end && *c->p == 'L')   /* Python 2 longs */
        c->p++;
    *out = v;
    return c->p != start;
}

/* Exactly one of the supported descr strings (length included: a descr
 * like '<f4\0' is not '<f4'). */
static int npy_descr_dtype(const char *descr, size_t len, us_dtype *out)
{
    static const struct { const char *descr; us_dtype dtype; } known[] = {
        { "<f4", US_DTYPE_F32 },  { "<f2", US_DTYPE_F16 },
        { "<V2", US_DTYPE_BF16 }, { "|V2", US_DTYPE_BF16 },
        { "|i1", US_DTYPE_INT8 }, { "<i1", US_DTYPE_INT8 }, { "i1", US_DTYPE_INT8 },
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (len == strlen(known[i].descr) && memcmp(descr, known[i].descr, len) == 0) {
            *out = known[i].dtype;
            return 0;
        }
    return -1;
}

/* s[0, len) for an error message: printable ASCII as is, other bytes as \xNN. */
static const char *printable(const char *s, size_t len, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            buf[n++] = (char)ch;
        else
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", ch);
    }
    buf[n] = '\0';
    return buf;
}

/* The shape tuple: "(3, 4)", "(3,)" or "()". US_ECORRUPT (no message: the
 * caller names the byte) when malformed. */
static int npy_shape(const us_tensor_file *f, npy_cursor *c, us_tensor_info *t, us_err *err)
{
    if (!npy_eat(c, '('))
        return US_ECORRUPT;
    t->ndim = 0;
    while (!npy_eat(c, ')')) {
        if (t->ndim == US_TF_MAX_DIMS)
            return us_err_set(err, US_EUNSUPP, "'%s': more than %d dimensions", f->path,
                              US_TF_MAX_DIMS);
        if (!npy_uint(c, &t->shape[t->ndim]))
            return US_ECORRUPT;
        t->ndim++;
        if (npy_eat(c, ','))
            continue;
        if (!npy_eat(c, ')'))
            return US_ECORRUPT;
        break;
    }
    return US_OK;
}

static int npy_parse_header(us_tensor_file *f, const char *hdr, size_t len, us_err *err)
{
    npy_cursor c = { hdr, hdr + len };
    char key[32], descr[32] = "";
    size_t key_len = 0, descr_len = 0;
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    us_tensor_info *t = &f->tensors[0];
    if (!npy_eat(&c, '{'))
        goto malformed;
    for (;;) {
        if (npy_eat(&c, '}'))
            break;
        if (!npy_string(&c, key, sizeof key, &key_len) || !npy_eat(&c, ':'))
            goto malformed;
        if (key_len != strlen(key)) {
            char shown[4 * sizeof key + 8];
            return us_err_set(err, US_ECORRUPT, "'%s': npy header has unknown key '%s'",
                              f->path, printable(key, key_len, shown, sizeof shown));
        }
        if (strcmp(key, "descr") == 0) {
            if (!npy_string(&c, descr, sizeof descr, &descr_len))
                goto malformed;
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            npy_skip_ws(&c);
            if (c.end - c.p >= 4 && memcmp(c.p, "True", 4) == 0) {
                fortran = true;
                c.p += 4;
            } else if (c.end - c.p >= 5 && memcmp(c.p, "False", 5) == 0) {
                c.p += 5;
            } else {
                goto malformed;
            }
            have_order = true;
        } else if (strcmp(key, "shape") == 0) {
            int rc = npy_shape(f, &c, t, err);
            if (rc == US_ECORRUPT)
                goto malformed;
            if (rc != US_OK)
                return rc;
            have_shape = true;
        } else {
            return us_err_set(err, US_ECORRUPT, "'%s': npy header has unknown key '%s'",
                              f->path, key);
        }
        if (npy_eat(&c, ','))
            continue;
        if (!npy_eat(&c, '}'))
            goto malformed;
        break;
    }
    if (!have_descr || !have_order || !have_shape)
        return us_err_set(err, US_ECORRUPT, "'%s': npy header lacks %s", f->path,
                          !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
    if (fortran)
        return us_err_set(err, US_EUNSUPP, "'%s': fortran_order arrays are not supported "
                          "(save a C-order array)", f->path);
    if (npy_descr_dtype(descr, descr_len, &t->dtype) != 0) {
        char shown[4 * sizeof descr + 8];
        return us_err_set(err, US_EUNSUPP, "'%s': npy dtype '%s' is not supported "
                          "(want exactly '<f4', '<f2', '<V2' for bf16, or '|i1')", f->path,
                          printable(descr, descr_len, shown, sizeof shown));
    }
    return US_OK;
malformed:
    return us_err_set(err, US_ECORRUPT, "'%s': malformed npy header near byte %ld",
                      f->path, (long)(c.p - hdr));
}

static int npy_open(us_tensor_file *f, const uint8_t *prefix, size_t prefix_len, us_err *err)
{
    if (prefix_len < 10)
        return us_err_set(err, US_ECORRUPT, "'%s': truncated npy preamble", f->path);
    unsigned major = prefix[6];
    uint64_t hlen, hstart;
    if (major == 1) {
        hlen = (uint64_t)prefix[8] | (uint64_t)prefix[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (prefix_len < 12)
            return us_err_set(err, US_ECORRUPT, "'%s': truncated npy preamble", f->path);
        hlen = (uint64_t)prefix[8] | (uint64_t)prefix[9] << 8 |
               (uint64_t)prefix[10] << 16 | (uint64_t)prefix[11] << 24;
        hstart = 12;
    } else {
        return us_err_set(err, US_EVERSION, "'%s': npy format version %u.%u not supported",
                          f->path, major, prefix[7]);
    }
    if (hstart + hlen > f->file_bytes)
        return us_err_set(err, US_ECORRUPT, "'%s': truncated: npy header of %llu bytes "
                          "but file has %llu", f->path, (unsigned long long)hlen,
                          (unsigned long long)f->file_bytes);
    if (hlen > (1u << 24))
        return us_err_set(err, US_ECORRUPT, "'%s': npy header of %llu bytes is implausible",
                          f->path, (unsigned long long)hlen);
    char *hdr = malloc(hlen + 1);
    if (hdr == NULL)
        return us_err_set(err, US_ENOMEM, "'%s': out of memory for header", f->path);
    int rc = us_pread_all(f->fd, hdr, hlen, hstart, f->path, err);
    if (rc == US_OK) {
        hdr[hlen] = '\0';
        f->n = 1;
        f->tensors = calloc(1, sizeof *f->tensors);
        f->names = calloc(1, sizeof *f->names);
        if (f->tensors == NULL || f->names == NULL)
            rc = us_err_set(err, US_ENOMEM, "'%s': out of memory", f->path);
    }
    if (rc == US_OK)
        rc = npy_parse_header(f, hdr, hlen, err);
    free(hdr);
    if (rc != US_OK)
        return rc;

    us_tensor_info *t = &f->tensors[0];
    if (!shape_bytes(t->shape, t->ndim, us_dtype_size(t->dtype), &t->nbytes))
        return us_err_set(err, US_ECORRUPT, "'%s': npy shape overflows 64 bits", f->path);
    t->offset_bytes = hstart + hlen;
    if (t->nbytes > f->file_bytes - t->offset_bytes)
        return us_err_set(err, US_ECORRUPT, "'%s': truncated: data needs %llu bytes after "
                          "the header, file has %llu", f->path, (unsigned long long)t->nbytes,
                          (unsigned long long)(f->file_bytes - t->offset_bytes));
    if (t->nbytes != f->file_bytes - t->offset_bytes)
        return us_err_set(err, US_ECORRUPT, "'%s': %llu unexpected trailing bytes after the "
                          "npy data", f->path,
                          (unsigned long long)(f->file_bytes - t->offset_bytes - t->nbytes));
    /* name = base name without .npy */
    const char *base = strrchr(f->path, '/');
    base = base ? base + 1 : f->path;
    size_t bl = strlen(base);
    if (bl > 4 && strcmp(base + bl - 4, ".npy") == 0)
        bl -= 4;
    f->names[0] = strndup(base, bl);
    if (f->names[0] == NULL)
        return us_err_set(err, US_ENOMEM, "'%s': out of memory", f->path);
    t->name = f->names[0];
    finish_info(t);
    return US_OK;
}

/* ---------------------------------------------------------- safetensors */

static int st_dtype(const char *s, us_dtype *out)
{
    if (strcmp(s, "F32") == 0)  { *out = US_DTYPE_F32;  return 0; }
    if (strcmp(s, "F16") == 0)  { *out = US_DTYPE_F16;  return 0; }
    if (strcmp(s, "BF16") == 0) { *out = US_DTYPE_BF16; return 0; }
    if (strcmp(s, "I8") == 0)   { *out = US_DTYPE_INT8; return 0; }
    return -1;
}

static bool json_u64(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d > JSON_MAX_EXACT || d != (double)(uint64_t)d)
        return false;
    *out = (uint64_t)d;
    return true;
}

static int cmp_offset(const void *a, const void *b)
{
    const us_tensor_info *x = a, *y = b;
    if (x->offset_bytes != y->offset_bytes)
        return x->offset_bytes < y->offset_bytes ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int st_entry(us_tensor_file *f, const cJSON *e, us_tensor_info *t, us_err *err)
{
    const char *nm = e->string;
    if (!cJSON_IsObject(e))
        return us_err_set(err, US_ECORRUPT, "'%s': tensor '%s': entry is not an object",
                          f->path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return us_err_set(err, US_ECORRUPT, "'%s': tensor '%s': needs string 'dtype', "
                          "array 'shape' and array 'data_offsets'", f->path, nm);
    if (st_dtype(dt->valuestring, &t->dtype) != 0)
        return us_err_set(err, US_EUNSUPP, "'%s': tensor '%s': dtype '%s' is not supported "
                          "(F32, F16, BF16, I8)", f->path, nm, dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > US_TF_MAX_DIMS)
        return us_err_set(err, US_EUNSUPP, "'%s': tensor '%s': %d dimensions (max %d)",
                          f->path, nm, nd, US_TF_MAX_DIMS);
    t->ndim = nd;
    for (int i = 0; i < nd; i++)
        if (!json_u64(cJSON_GetArrayItem(sh, i), &t->shape[i]))
            return us_err_set(err, US_ECORRUPT, "'%s': tensor '%s': shape[%d] is not a "
                              "non-negative integer", f->path, nm, i);
    uint64_t begin, end;
    if (cJSON_GetArraySize(off) != 2 || !json_u64(cJSON_GetArrayItem(off, 0), &begin) ||
        !json_u64(cJSON_GetArrayItem(off, 1), &end) || end < begin)
        return us_err_set(err, US_ECORRUPT, "'%s': tensor '%s': data_offsets must be "
                          "[begin, end] integers with begin <= end", f->path, nm);
    if (!shape_bytes(t->shape, t->ndim, us_dtype_size(t->dtype), &t->nbytes))
        return us_err_set(err, US_ECORRUPT, "'%s': tensor '%s': shape overflows 64 bits",
                          f->path, nm);
    if (end - begin != t->nbytes)
        return us_err_set(err, US_ECORRUPT, "'%s': tensor '%s': data_offsets span %llu bytes "
                          "but shape and dtype need %llu", f->path, nm,
                          (unsigned long long)(end - begin), (unsigned long long)t->nbytes);
    t->offset_bytes = begin;  /* relative for now */
    return US_OK;
}

/* Offset of the first NUL in the header text, raw or escaped as \u0000, or
 * -1. cJSON would cut a string there, so "F32\u0000" would read as "F32". */
static long st_find_nul(const char *json, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (json[i] == '\0')
            return (long)i;
        if (json[i] != '\\' || i + 1 >= len)
            continue;
        if (json[i + 1] == 'u' && i + 6 <= len && memcmp(json + i + 2, "0000", 4) == 0)
            return (long)i;
        i++;   /* skip the escaped character: "\\u0000" is not a NUL */
    }
    return -1;
}

/* Reads the 8-byte length and the JSON header; *root is a JSON object
 * followed only by padding, *data_start the first byte after the header. */
static int st_read_header(us_tensor_file *f, const uint8_t *prefix, size_t prefix_len,
                          cJSON **root, uint64_t *data_start, us_err *err)
{
    if (prefix_len < 8 || f->file_bytes < 8)
        return us_err_set(err, US_ECORRUPT, "'%s': truncated: %llu bytes is too short for a "
                          "safetensors file", f->path, (unsigned long long)f->file_bytes);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | prefix[i];
    if (hlen > ST_MAX_HEADER_BYTES)
        return us_err_set(err, US_ECORRUPT, "'%s': safetensors header length %llu exceeds "
                          "%llu bytes (not a safetensors file?)", f->path,
                          (unsigned long long)hlen, ST_MAX_HEADER_BYTES);
    if (hlen > f->file_bytes - 8)
        return us_err_set(err, US_ECORRUPT, "'%s': truncated: header needs %llu bytes, file "
                          "has %llu after the length", f->path, (unsigned long long)hlen,
                          (unsigned long long)(f->file_bytes - 8));
    char *json = malloc(hlen + 1);
    if (json == NULL)
        return us_err_set(err, US_ENOMEM, "'%s': out of memory for header", f->path);
    int rc = us_pread_all(f->fd, json, hlen, 8, f->path, err);
    if (rc != US_OK)
        goto free_json;
    json[hlen] = '\0';
    long nul = st_find_nul(json, hlen);
    if (nul >= 0) {
        rc = us_err_set(err, US_ECORRUPT, "'%s': safetensors header has a NUL character at "
                        "byte %ld; tensor names and dtypes must be exact strings", f->path,
                        8 + nul);
        goto free_json;
    }
    /* the JSON object, then only padding (spaces, as the reference writes) */
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(json, hlen, &end, 0);
    bool clean = *root != NULL && cJSON_IsObject(*root);
    for (const char *p = end; clean && p < json + hlen; p++)
        clean = *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r';
    if (!clean) {
        cJSON_Delete(*root);
        *root = NULL;
        rc = us_err_set(err, US_ECORRUPT, "'%s': safetensors header is not a JSON object "
                        "(followed only by spaces)", f->path);
    }
    *data_start = 8 + hlen;
free_json:
    free(json);
    return rc;
}

/* One us_tensor_info per entry of the header object (offsets still relative
 * to the data area), "__metadata__" skipped; names unique. */
static int st_collect(us_tensor_file *f, const cJSON *root, us_err *err)
{
    size_t n = 0;
    for (const cJSON *e = root->child; e != NULL; e = e->next)
        if (strcmp(e->string, "__metadata__") != 0)
            n++;
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    f->names = calloc(n ? n : 1, sizeof *f->names);
    if (f->tensors == NULL || f->names == NULL)
        return us_err_set(err, US_ENOMEM, "'%s': out of memory", f->path);
    size_t i = 0;
    for (const cJSON *e = root->child; e != NULL; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e))
                return us_err_set(err, US_ECORRUPT, "'%s': __metadata__ is not an object",
                                  f->path);
            continue;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(f->names[j], e->string) == 0)
                return us_err_set(err, US_ECORRUPT, "'%s': tensor '%s' appears twice",
                                  f->path, e->string);
        f->names[i] = strdup(e->string);
        if (f->names[i] == NULL)
            return us_err_set(err, US_ENOMEM, "'%s': out of memory", f->path);
        f->tensors[i].name = f->names[i];
        f->n = ++i;
        int rc = st_entry(f, e, &f->tensors[i - 1], err);
        if (rc != US_OK)
            return rc;
    }
    return US_OK;
}

/* Sorts by offset and requires an exact tiling of the data area, then makes
 * offsets absolute. Names move with their tensors; f->names only owns the
 * strings. */
static int st_check_tiling(us_tensor_file *f, uint64_t data_start, us_err *err)
{
    uint64_t data_bytes = f->file_bytes - data_start, expect = 0;
    qsort(f->tensors, f->n, sizeof *f->tensors, cmp_offset);
    for (size_t i = 0; i < f->n; i++) {
        us_tensor_info *t = &f->tensors[i];
        uint64_t begin = t->offset_bytes, end = begin + t->nbytes;
        if (begin < expect)
            return us_err_set(err, US_ECORRUPT, "'%s': tensor '%s': data_offsets [%llu, %llu) "
                              "overlap the previous tensor", f->path, t->name,
                              (unsigned long long)begin, (unsigned long long)end);
        if (begin > expect)
            return us_err_set(err, US_ECORRUPT, "'%s': tensor '%s': hole of %llu bytes before "
                              "its data_offsets", f->path, t->name,
                              (unsigned long long)(begin - expect));
        if (end > data_bytes)
            return us_err_set(err, US_ECORRUPT, "'%s': truncated or out of bounds: tensor '%s' "
                              "data ends at %llu but the data area has %llu bytes", f->path,
                              t->name, (unsigned long long)end, (unsigned long long)data_bytes);
        expect = end;
        t->offset_bytes = data_start + begin;
        finish_info(t);
    }
    if (expect != data_bytes)
        return us_err_set(err, US_ECORRUPT, "'%s': %llu trailing bytes after the last tensor",
                          f->path, (unsigned long long)(data_bytes - expect));
    return US_OK;
}

static int st_open(us_tensor_file *f, const uint8_t *prefix, size_t prefix_len, us_err *err)
{
    cJSON *root = NULL;
    uint64_t data_start = 0;
    int rc = st_read_header(f, prefix, prefix_len, &root, &data_start, err);
    if (rc != US_OK)
        return rc;
    rc = st_collect(f, root, err);
    cJSON_Delete(root);
    if (rc != US_OK)
        return rc;
    return st_check_tiling(f, data_start, err);
}

/* --------------------------------------------------------------- common */

int us_tf_open(const char *path, us_tensor_file **out, us_err *err)
{
    *out = NULL;
    us_tensor_file *f = calloc(1, sizeof *f);
    if (f == NULL || (f->path = strdup(path)) == NULL) {
        free(f);
        return us_err_set(err, US_ENOMEM, "open '%s': out of memory", path);
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        int e = errno;
        us_tf_close(f);
        return us_err_set(err, e == ENOENT ? US_ENOTFOUND : US_EIO, "open '%s': %s",
                          path, strerror(e));
    }
    struct stat st;
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        us_tf_close(f);
        return us_err_set(err, US_EIO, "'%s': not a regular file", path);
    }
    f->file_bytes = (uint64_t)st.st_size;
    uint8_t prefix[16] = {0};
    size_t prefix_len = f->file_bytes < sizeof prefix ? (size_t)f->file_bytes : sizeof prefix;
    int rc = us_pread_all(f->fd, prefix, prefix_len, 0, path, err);
    if (rc == US_OK) {
        if (prefix_len >= NPY_MAGIC_BYTES && memcmp(prefix, NPY_MAGIC, NPY_MAGIC_BYTES) == 0) {
            f->format = US_TF_NPY;
            rc = npy_open(f, prefix, prefix_len, err);
        } else {
            f->format = US_TF_SAFETENSORS;
            rc = st_open(f, prefix, prefix_len, err);
        }
    }
    if (rc != US_OK) {
        us_tf_close(f);
        return rc;
    }
    *out = f;
    return US_OK;
}

void us_tf_close(us_tensor_file *f)
{
    if (f == NULL)
        return;
    if (f->fd >= 0)
        close(f->fd);
    for (size_t i = 0; f->names != NULL && i < f->n; i++)
        free(f->names[i]);
    free(f->names);
    free(f->tensors);
    free(f->path);
    free(f);
}

const char *us_tf_path(const us_tensor_file *f) { return f->path; }
us_tf_format us_tf_format_of(const us_tensor_file *f) { return f->format; }
size_t us_tf_count(const us_tensor_file *f) { return f->n; }

const us_tensor_info *us_tf_tensor(const us_tensor_file *f, size_t i)
{
    return i < f->n ? &f->tensors[i] : NULL;
}

int us_tf_find(const us_tensor_file *f, const char *name, const us_tensor_info **out,
               us_err *err)
{
    *out = NULL;
    if (name == NULL) {
        if (f->n != 1)
            return us_err_set(err, US_EINVAL, "'%s' holds %zu tensors; name one", f->path, f->n);
        *out = &f->tensors[0];
        return US_OK;
    }
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) {
            *out = &f->tensors[i];
            return US_OK;
        }
    return us_err_set(err, US_ENOTFOUND, "'%s': no tensor named '%s'", f->path, name);
}

int us_tf_read_rows(const us_tensor_file *f, const us_tensor_info *t, uint64_t row_begin,
                    uint64_t n_rows, void *dst, size_t dst_bytes, us_err *err)
{
    if (row_begin > t->rows || n_rows > t->rows - row_begin)
        return us_err_set(err, US_ERANGE, "'%s': tensor '%s': rows [%llu, %llu) outside "
                          "[0, %llu)", f->path, t->name, (unsigned long long)row_begin,
                          (unsigned long long)(row_begin + n_rows), (unsigned long long)t->rows);
    uint64_t bytes = n_rows * t->row_bytes;
    if (bytes > dst_bytes)
        return us_err_set(err, US_EINVAL, "'%s': tensor '%s': %llu rows need %llu bytes, "
                          "buffer has %zu", f->path, t->name, (unsigned long long)n_rows,
                          (unsigned long long)bytes, dst_bytes);
    int rc = us_pread_all(f->fd, dst, (size_t)bytes, t->offset_bytes + row_begin * t->row_bytes,
                          f->path, err);
    if (rc != US_OK)
        return us_err_prefix(err, "tensor '%s'", t->name);
    return US_OK;
}

int us_tf_read(const us_tensor_file *f, const us_tensor_info *t, void *dst, size_t dst_bytes,
               us_err *err)
{
    return us_tf_read_rows(f, t, 0, t->rows, dst, dst_bytes, err);
}

/* --------------------------------------------------------------- writer */

static int desc_check(const us_tensor_desc *d, uint64_t *nbytes, us_err *err)
{
    if (d->name == NULL || d->name[0] == '\0')
        return us_err_set(err, US_EINVAL, "tensor with an empty name");
    if (strcmp(d->name, "__metadata__") == 0)
        return us_err_set(err, US_EINVAL, "tensor name '__metadata__' is reserved");
    for (const char *p = d->name; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            return us_err_set(err, US_EINVAL, "tensor '%s': name has a quote, backslash "
                              "or control character", d->name);
    if (d->ndim < 0 || d->ndim > US_TF_MAX_DIMS)
        return us_err_set(err, US_EINVAL, "tensor '%s': %d dimensions", d->name, d->ndim);
    if (us_tf_safetensors_dtype(d->dtype) == NULL)
        return us_err_set(err, US_EINVAL, "tensor '%s': unknown dtype %d", d->name, d->dtype);
    if (!shape_bytes(d->shape, d->ndim, us_dtype_size(d->dtype), nbytes) ||
        *nbytes > (uint64_t)JSON_MAX_EXACT)
        return us_err_set(err, US_EINVAL, "tensor '%s': too large", d->name);
    return US_OK;
}

static int buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return 0;
        }
        size_t ncap = *cap * 2 + (size_t)n + 64;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
}

static int npy_header(const us_tensor_desc *d, char **buf, size_t *len, size_t *cap)
{
    static const char *descr[] = { "<f4", "<V2", "<f2", "|i1" };  /* by us_dtype */
    /* magic + v1.0 + 2-byte length placeholder */
    if (buf_printf(buf, len, cap, "%s%c%c%c%c", NPY_MAGIC, 1, 0, 0, 0) != 0 ||
        buf_printf(buf, len, cap, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                   descr[d->dtype]) != 0)
        return -1;
    for (int i = 0; i < d->ndim; i++)
        if (buf_printf(buf, len, cap, "%llu,%s", (unsigned long long)d->shape[i],
                       i + 1 < d->ndim ? " " : "") != 0)
            return -1;
    if (d->ndim > 1)
        (*len)--;   /* "(3, 4)" rather than "(3, 4,)"; a 1-tuple keeps "(3,)" */
    if (buf_printf(buf, len, cap, "), }") != 0)
        return -1;
    /* pad with spaces so data starts at a multiple of 64, end with '\n' */
    while ((*len + 1) % 64 != 0)
        if (buf_printf(buf, len, cap, " ") != 0)
            return -1;
    if (buf_printf(buf, len, cap, "\n") != 0)
        return -1;
    size_t hlen = *len - 10;   /* <= 8 dims of 20 digits: always fits version 1.0 */
    if (hlen > 0xffff)
        return -1;
    (*buf)[8] = (char)(hlen & 0xff);
    (*buf)[9] = (char)(hlen >> 8);
    return 0;
}

int us_tf_writer_open(us_tf_writer *w, const char *path, us_tf_format format,
                      const us_tensor_desc *tensors, size_t n, bool overwrite, us_err *err)
{
    memset(w, 0, sizeof *w);
    w->file.fd = -1;
    if (format == US_TF_NPY && n != 1)
        return us_err_set(err, US_EINVAL, "'%s': an npy file holds exactly one tensor, "
                          "not %zu", path, n);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb;
        int rc = desc_check(&tensors[i], &nb, err);
        if (rc != US_OK)
            return us_err_prefix(err, "'%s'", path);
        for (size_t j = 0; j < i; j++)
            if (strcmp(tensors[j].name, tensors[i].name) == 0)
                return us_err_set(err, US_EINVAL, "'%s': tensor name '%s' used twice",
                                  path, tensors[i].name);
        total += nb;
    }
    size_t cap = 256, len = 0;
    char *hdr = malloc(cap);
    if (hdr == NULL)
        return us_err_set(err, US_ENOMEM, "'%s': out of memory", path);
    int bad = 0;
    if (format == US_TF_NPY) {
        bad = npy_header(&tensors[0], &hdr, &len, &cap);
    } else {
        bad = buf_printf(&hdr, &len, &cap, "%s", "01234567{");  /* length placeholder */
        uint64_t off = 0;
        for (size_t i = 0; i < n && !bad; i++) {
            uint64_t nb;
            desc_check(&tensors[i], &nb, NULL);
            bad |= buf_printf(&hdr, &len, &cap, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                              i ? "," : "", tensors[i].name,
                              us_tf_safetensors_dtype(tensors[i].dtype));
            for (int d = 0; d < tensors[i].ndim && !bad; d++)
                bad |= buf_printf(&hdr, &len, &cap, "%s%llu", d ? "," : "",
                                  (unsigned long long)tensors[i].shape[d]);
            bad |= buf_printf(&hdr, &len, &cap, "],\"data_offsets\":[%llu,%llu]}",
                              (unsigned long long)off, (unsigned long long)(off + nb));
            off += nb;
        }
        bad |= buf_printf(&hdr, &len, &cap, "}");
        while (!bad && len % 8 != 0)      /* data area 8-byte aligned, as the reference */
            bad |= buf_printf(&hdr, &len, &cap, " ");
        uint64_t hlen = len - 8;
        for (int b = 0; b < 8; b++)
            hdr[b] = (char)(hlen >> (8 * b) & 0xff);
    }
    if (bad) {
        free(hdr);
        return us_err_set(err, US_ENOMEM, "'%s': out of memory for header", path);
    }
    int rc = us_durable_open(&w->file, path, overwrite, err);
    if (rc == US_OK)
        rc = us_durable_write(&w->file, hdr, len, err);
    free(hdr);
    if (rc != US_OK) {
        us_durable_abort(&w->file);
        return rc;
    }
    w->header_bytes = len;
    w->data_bytes = total;
    return US_OK;
}

int us_tf_writer_append(us_tf_writer *w, const void *bytes, size_t n, us_err *err)
{
    if (w->file.bytes_written + n > w->header_bytes + w->data_bytes)
        return us_err_set(err, US_EINVAL, "'%s': appending %zu bytes exceeds the %llu "
                          "declared data bytes", w->file.path, n,
                          (unsigned long long)w->data_bytes);
    return us_durable_write(&w->file, bytes, n, err);
}

int us_tf_writer_commit(us_tf_writer *w, us_err *err)
{
    uint64_t got = w->file.bytes_written - w->header_bytes;
    if (got != w->data_bytes) {
        int rc = us_err_set(err, US_EINVAL, "'%s': %llu of %llu declared data bytes written",
                            w->file.path, (unsigned long long)got,
                            (unsigned long long)w->data_bytes);
        us_durable_abort(&w->file);
        return rc;
    }
    return us_durable_commit(&w->file, err);
}

void us_tf_writer_abort(us_tf_writer *w)
{
    us_durable_abort(&w->file);
}

int us_tf_write(const char *path, us_tf_format format, const us_tensor_desc *tensors,
                size_t n, bool overwrite, us_err *err)
{
    us_tf_writer w;
    int rc = us_tf_writer_open(&w, path, format, tensors, n, overwrite, err);
    if (rc != US_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb;
        desc_check(&tensors[i], &nb, NULL);
        if (nb > 0 && tensors[i].data == NULL) {
            us_tf_writer_abort(&w);
            return us_err_set(err, US_EINVAL, "'%s': tensor '%s' has no data", path,
                              tensors[i].name);
        }
        if ((rc = us_tf_writer_append(&w, tensors[i].data, (size_t)nb, err)) != US_OK) {
            us_tf_writer_abort(&w);
            return rc;
        }
    }
    return us_tf_writer_commit(&w, err);
}
