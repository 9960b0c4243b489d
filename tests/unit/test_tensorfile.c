/* test_tensorfile.c — .npy / safetensors reading, writing, and every kind of bad file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "tests/unit/tmpdir.h"

#include "shard/tensorfile.h"

#define tmpdir us_test_tmpdir

static const char *tpath(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static uint8_t *read_raw(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* Builds a safetensors file from a header string and n data bytes (0..n-1). */
static void write_st(const char *path, const char *json, size_t data_bytes)
{
    size_t hl = strlen(json);
    uint8_t *b = malloc(8 + hl + data_bytes + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    for (size_t i = 0; i < data_bytes; i++)
        b[8 + hl + i] = (uint8_t)i;
    write_raw(path, b, 8 + hl + data_bytes);
    free(b);
}

static int open_code(const char *path, us_err *err)
{
    us_tensor_file *f = NULL;
    us_err_clear(err);
    int rc = us_tf_open(path, &f, err);
    if (rc == US_OK)
        us_tf_close(f);
    else
        assert_null(f);
    return rc;
}

static void test_safetensors_roundtrip(void **state)
{
    (void)state;
    float a[2][3] = { { 1, 2, 3 }, { -4, 5.5f, 1e-20f } };
    uint16_t b[4] = { 0x3f80, 0xbf80, 0x7f80, 0x0001 };
    int8_t c[2][2] = { { -128, 127 }, { 0, -1 } };
    us_tensor_desc d[3] = {
        { .name = "values", .dtype = US_DTYPE_F32, .ndim = 2, .shape = { 2, 3 }, .data = a },
        { .name = "layer.0.bias", .dtype = US_DTYPE_BF16, .ndim = 1, .shape = { 4 }, .data = b },
        { .name = "q", .dtype = US_DTYPE_INT8, .ndim = 2, .shape = { 2, 2 }, .data = c },
    };
    us_err err = {0};
    const char *p = tpath("three.safetensors");
    assert_int_equal(us_tf_write(p, US_TF_SAFETENSORS, d, 3, false, &err), US_OK);
    /* a second write without overwrite is refused and leaves the file as it was */
    size_t n0;
    uint8_t *before = read_raw(p, &n0);
    assert_int_equal(us_tf_write(p, US_TF_SAFETENSORS, d, 1, false, &err), US_EEXIST);
    assert_non_null(strstr(err.msg, "three.safetensors"));
    size_t n1;
    uint8_t *after = read_raw(p, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
    /* header is 8-byte aligned like the reference writer's */
    assert_int_equal((n0 - (24 + 8 + 4)) % 8, 0);

    us_tensor_file *f;
    assert_int_equal(us_tf_open(p, &f, &err), US_OK);
    assert_int_equal(us_tf_format_of(f), US_TF_SAFETENSORS);
    assert_int_equal(us_tf_count(f), 3);
    const us_tensor_info *t0 = us_tf_tensor(f, 0), *t1 = us_tf_tensor(f, 1), *t2 = us_tf_tensor(f, 2);
    assert_null(us_tf_tensor(f, 3));
    assert_string_equal(t0->name, "values");
    assert_string_equal(t1->name, "layer.0.bias");
    assert_string_equal(t2->name, "q");
    assert_int_equal(t0->dtype, US_DTYPE_F32);
    assert_int_equal(t1->dtype, US_DTYPE_BF16);
    assert_int_equal(t2->dtype, US_DTYPE_INT8);
    assert_int_equal(t0->ndim, 2);
    assert_int_equal(t0->shape[1], 3);
    assert_int_equal(t0->rows, 2);
    assert_int_equal(t0->row_bytes, 12);
    assert_int_equal(t1->offset_bytes, t0->offset_bytes + 24);
    assert_int_equal(t2->offset_bytes, t1->offset_bytes + 8);
    assert_int_equal(t2->offset_bytes + 4, n0);

    float ra[2][3];
    assert_int_equal(us_tf_read(f, t0, ra, sizeof ra, &err), US_OK);
    assert_memory_equal(ra, a, sizeof a);
    float row1[3];
    assert_int_equal(us_tf_read_rows(f, t0, 1, 1, row1, sizeof row1, &err), US_OK);
    assert_memory_equal(row1, a[1], sizeof row1);
    uint16_t rb[2];
    assert_int_equal(us_tf_read_rows(f, t1, 2, 2, rb, sizeof rb, &err), US_OK);
    assert_int_equal(rb[0], 0x7f80);
    assert_int_equal(rb[1], 0x0001);
    int8_t rc8[2][2];
    assert_int_equal(us_tf_read(f, t2, rc8, sizeof rc8, &err), US_OK);
    assert_memory_equal(rc8, c, sizeof c);

    /* range and buffer errors */
    assert_int_equal(us_tf_read_rows(f, t0, 1, 2, ra, sizeof ra, &err), US_ERANGE);
    assert_non_null(strstr(err.msg, "values"));
    assert_int_equal(us_tf_read_rows(f, t0, 0, 2, row1, sizeof row1, &err), US_EINVAL);
    const us_tensor_info *found;
    assert_int_equal(us_tf_find(f, "q", &found, &err), US_OK);
    assert_ptr_equal(found, t2);
    assert_int_equal(us_tf_find(f, "nope", &found, &err), US_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nope"));
    assert_int_equal(us_tf_find(f, NULL, &found, &err), US_EINVAL);
    us_tf_close(f);
}

static void test_npy_roundtrip_all_dtypes(void **state)
{
    (void)state;
    us_err err = {0};
    float a[3][4];
    for (int i = 0; i < 12; i++)
        a[i / 4][i % 4] = (float)i * 0.25f - 1.0f;
    uint16_t h[5] = { 0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000 };
    int8_t q[2] = { -7, 100 };
    struct { const char *name; us_dtype dt; int ndim; uint64_t shape[2]; const void *data; size_t bytes; } cases[] = {
        { "a.npy", US_DTYPE_F32, 2, { 3, 4 }, a, sizeof a },
        { "h.npy", US_DTYPE_F16, 1, { 5, 0 }, h, sizeof h },
        { "b.npy", US_DTYPE_BF16, 1, { 5, 0 }, h, sizeof h },
        { "q.npy", US_DTYPE_INT8, 1, { 2, 0 }, q, sizeof q },
        { "s.npy", US_DTYPE_F32, 0, { 0, 0 }, a, 4 },
        { "e.npy", US_DTYPE_F32, 2, { 0, 4 }, a, 0 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        us_tensor_desc d = { .name = "x", .dtype = cases[k].dt, .ndim = cases[k].ndim,
                             .shape = { cases[k].shape[0], cases[k].shape[1] },
                             .data = cases[k].data };
        const char *p = tpath(cases[k].name);
        assert_int_equal(us_tf_write(p, US_TF_NPY, &d, 1, false, &err), US_OK);
        size_t n;
        uint8_t *raw = read_raw(p, &n);
        assert_memory_equal(raw, "\x93NUMPY\x01\x00", 8);
        size_t hl = raw[8] | raw[9] << 8;
        assert_int_equal((10 + hl) % 64, 0);          /* data aligned like numpy's */
        assert_int_equal(raw[10 + hl - 1], '\n');
        free(raw);

        us_tensor_file *f;
        assert_int_equal(us_tf_open(p, &f, &err), US_OK);
        assert_int_equal(us_tf_format_of(f), US_TF_NPY);
        const us_tensor_info *t;
        assert_int_equal(us_tf_find(f, NULL, &t, &err), US_OK);
        char stem[8];
        snprintf(stem, sizeof stem, "%c", cases[k].name[0]);
        assert_string_equal(t->name, stem);
        assert_int_equal(t->dtype, cases[k].dt);
        assert_int_equal(t->ndim, cases[k].ndim);
        assert_int_equal(t->nbytes, cases[k].bytes);
        uint8_t back[64] = {0};
        assert_int_equal(us_tf_read(f, t, back, sizeof back, &err), US_OK);
        assert_memory_equal(back, cases[k].data, cases[k].bytes);
        us_tf_close(f);
    }
    /* row range of the 3x4 array */
    us_tensor_file *f;
    assert_int_equal(us_tf_open(tpath("a.npy"), &f, &err), US_OK);
    float rows[2][4];
    assert_int_equal(us_tf_read_rows(f, us_tf_tensor(f, 0), 1, 2, rows, sizeof rows, &err), US_OK);
    assert_memory_equal(rows, a[1], sizeof rows);
    us_tf_close(f);
}

/* Builds an npy file from a header dict text, a version, and data bytes. */
static void write_npy(const char *path, int major, const char *dict, size_t data_bytes)
{
    size_t dl = strlen(dict), pre = major == 1 ? 10 : 12;
    size_t hl = dl + 1;
    uint8_t *b = calloc(1, pre + hl + data_bytes + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (uint8_t)major;
    b[8] = (uint8_t)(hl & 0xff);
    b[9] = (uint8_t)(hl >> 8);
    memcpy(b + pre, dict, dl);
    b[pre + dl] = '\n';
    write_raw(path, b, pre + hl + data_bytes);
    free(b);
}

static void test_npy_headers(void **state)
{
    (void)state;
    us_err err;
    /* version 2.0 and 3.0 headers, tuple spacing, trailing commas */
    write_npy(tpath("v2.npy"), 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24);
    assert_int_equal(open_code(tpath("v2.npy"), &err), US_OK);
    write_npy(tpath("v3.npy"), 3, "{\"descr\":\"<f2\",\"fortran_order\":False,\"shape\":(4,)}", 8);
    assert_int_equal(open_code(tpath("v3.npy"), &err), US_OK);
    write_npy(tpath("bf.npy"), 1, "{'descr': '|V2', 'fortran_order': False, 'shape': (2,), }", 4);
    us_tensor_file *f;
    assert_int_equal(us_tf_open(tpath("bf.npy"), &f, &err), US_OK);
    assert_int_equal(us_tf_tensor(f, 0)->dtype, US_DTYPE_BF16);
    us_tf_close(f);

    struct { const char *dict; int major; size_t data; int code; const char *needle; } bad[] = {
        { "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 1, 24, US_EUNSUPP, "fortran" },
        { "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 1, 24, US_EUNSUPP, ">f4" },
        { "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 1, 48, US_EUNSUPP, "<f8" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 1, 23, US_ECORRUPT, "truncated" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 1, 25, US_ECORRUPT, "trailing" },
        { "{'descr': '<f4', 'fortran_order': False }", 1, 0, US_ECORRUPT, "shape" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", 1, 24, US_ECORRUPT, "'x'" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 1, 24, US_ECORRUPT, "malformed" },
        { "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }", 1, 24, US_ECORRUPT, "malformed" },
        { "['descr', '<f4']", 1, 24, US_ECORRUPT, "malformed" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }", 1, 0, US_ECORRUPT, "overflow" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 1, 4, US_EUNSUPP, "dimensions" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 9, 24, US_EVERSION, "version" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = tpath("bad.npy");
        write_npy(p, bad[i].major, bad[i].dict, bad[i].data);
        int rc = open_code(p, &err);
        if (rc != bad[i].code || strstr(err.msg, bad[i].needle) == NULL ||
            strstr(err.msg, "bad.npy") == NULL)
            fail_msg("case %zu: rc %d msg '%s' (want %d, '%s')", i, rc, err.msg,
                     bad[i].code, bad[i].needle);
    }
    /* header length pointing past the end of the file */
    uint8_t pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0x7f };
    write_raw(tpath("short.npy"), pre, sizeof pre);
    assert_int_equal(open_code(tpath("short.npy"), &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_int_equal(open_code(tpath("missing.npy"), &err), US_ENOTFOUND);
    assert_non_null(strstr(err.msg, "missing.npy"));
}

static void test_safetensors_bad(void **state)
{
    (void)state;
    us_err err;
    struct { const char *json; size_t data; int code; const char *needle; } cases[] = {
        /* valid, with metadata and two tensors out of order */
        { "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, US_OK, "" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, US_ECORRUPT, "overlap" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", 16, US_ECORRUPT, "hole" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12, US_ECORRUPT, "out of bounds" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, US_ECORRUPT, "trailing" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, US_ECORRUPT, "need 12" },
        { "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, US_EUNSUPP, "F64" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, US_ECORRUPT, "shape[0]" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, US_ECORRUPT, "begin <= end" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4]}}", 4, US_ECORRUPT, "data_offsets" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, US_ECORRUPT, "data_offsets" },
        { "{\"a\":[1,2]}", 0, US_ECORRUPT, "not an object" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, US_ECORRUPT, "JSON" },
        { "[1,2,3]", 0, US_ECORRUPT, "JSON object" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}xyz", 4, US_ECORRUPT, "JSON object" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}     ", 4, US_OK, "" },
        { "{\"__metadata__\":3}", 0, US_ECORRUPT, "__metadata__" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, US_ECORRUPT, "twice" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = tpath("bad.safetensors");
        write_st(p, cases[i].json, cases[i].data);
        int rc = open_code(p, &err);
        if (rc != cases[i].code || strstr(err.msg, cases[i].needle) == NULL ||
            (rc != US_OK && strstr(err.msg, "bad.safetensors") == NULL))
            fail_msg("case %zu: rc %d msg '%s' (want %d, '%s')", i, rc, err.msg,
                     cases[i].code, cases[i].needle);
    }
    /* NUL bytes after the JSON object (strlen-based writers would hide them) */
    static const char nul_hdr[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\0\0";
    uint8_t nb[8 + sizeof nul_hdr - 1 + 4] = { sizeof nul_hdr - 1 };
    memcpy(nb + 8, nul_hdr, sizeof nul_hdr - 1);
    write_raw(tpath("nul.safetensors"), nb, sizeof nb);
    assert_int_equal(open_code(tpath("nul.safetensors"), &err), US_ECORRUPT);
    /* a huge header length is refused before any allocation */
    uint8_t big[16] = { 0, 0, 0, 0, 0, 0, 0, 0x10, '{', '}' };
    write_raw(tpath("big.safetensors"), big, sizeof big);
    assert_int_equal(open_code(tpath("big.safetensors"), &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "header length"));
    write_raw(tpath("tiny.safetensors"), big, 5);
    assert_int_equal(open_code(tpath("tiny.safetensors"), &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "truncated"));
}

/* A dtype string is one of the supported ones exactly: a NUL inside it (npy
 * descr '<f4\0', safetensors "F32\u0000") once read as the prefix. */
static void test_dtype_strings_exact(void **state)
{
    (void)state;
    us_err err;
    static const char descr_nul[] = "{'descr': '<f4\0', 'fortran_order': False, 'shape': (2,), }";
    size_t dl = sizeof descr_nul - 1, hl = dl + 1;
    uint8_t b[10 + sizeof descr_nul + 8] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                             (uint8_t)hl, 0 };
    memcpy(b + 10, descr_nul, dl);
    b[10 + dl] = '\n';
    write_raw(tpath("nul_descr.npy"), b, 10 + hl + 8);
    assert_int_equal(open_code(tpath("nul_descr.npy"), &err), US_EUNSUPP);
    assert_non_null(strstr(err.msg, "nul_descr.npy"));
    assert_non_null(strstr(err.msg, "'<f4\\x00'"));
    /* the same bytes with the NUL dropped open fine: only the descr differs */
    write_npy(tpath("ok_descr.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8);
    assert_int_equal(open_code(tpath("ok_descr.npy"), &err), US_OK);
    const char *npy_bad[] = { "<f4 ", " <f4", "<f", "<f44", "f4", "<F4", "|i1x" };
    for (size_t i = 0; i < sizeof npy_bad / sizeof npy_bad[0]; i++) {
        char dict[128];
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (2,), }",
                 npy_bad[i]);
        write_npy(tpath("bad_descr.npy"), 1, dict, 8);
        int rc = open_code(tpath("bad_descr.npy"), &err);
        char want[16];
        snprintf(want, sizeof want, "'%s'", npy_bad[i]);
        if (rc != US_EUNSUPP || strstr(err.msg, want) == NULL ||
            strstr(err.msg, "bad_descr.npy") == NULL)
            fail_msg("descr '%s': rc %d msg '%s'", npy_bad[i], rc, err.msg);
    }
    /* a NUL inside an npy key is not the key */
    static const char key_nul[] = "{'descr\0': '<f4', 'fortran_order': False, 'shape': (2,), }";
    dl = sizeof key_nul - 1;
    hl = dl + 1;
    b[8] = (uint8_t)hl;
    memcpy(b + 10, key_nul, dl);
    b[10 + dl] = '\n';
    write_raw(tpath("nul_key.npy"), b, 10 + hl + 8);
    assert_int_equal(open_code(tpath("nul_key.npy"), &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "'descr\\x00'"));

    struct { const char *json; int code; const char *needle; } st[] = {
        { "{\"a\":{\"dtype\":\"F32\\u0000\",\"shape\":[1],\"data_offsets\":[0,4]}}", US_ECORRUPT, "NUL" },
        { "{\"a\":{\"dtype\":\"F32\\u0000x\",\"shape\":[1],\"data_offsets\":[0,4]}}", US_ECORRUPT, "NUL" },
        { "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", US_ECORRUPT, "NUL" },
        { "{\"a\":{\"dtype\":\"F32 \",\"shape\":[1],\"data_offsets\":[0,4]}}", US_EUNSUPP, "'F32 '" },
        { "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", US_EUNSUPP, "'f32'" },
        /* an escaped backslash before "u0000" is two characters, not a NUL */
        { "{\"a\\\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", US_OK, "" },
    };
    for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
        write_st(tpath("dt.safetensors"), st[i].json, 4);
        int rc = open_code(tpath("dt.safetensors"), &err);
        if (rc != st[i].code || strstr(err.msg, st[i].needle) == NULL ||
            (rc != US_OK && strstr(err.msg, "dt.safetensors") == NULL))
            fail_msg("case %zu: rc %d msg '%s' (want %d, '%s')", i, rc, err.msg, st[i].code,
                     st[i].needle);
    }
    /* a raw NUL byte inside the dtype string */
    static const char raw_nul[] = "{\"a\":{\"dtype\":\"F32\0\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    uint8_t rb[8 + sizeof raw_nul - 1 + 4] = { sizeof raw_nul - 1 };
    memcpy(rb + 8, raw_nul, sizeof raw_nul - 1);
    write_raw(tpath("raw_nul.safetensors"), rb, sizeof rb);
    assert_int_equal(open_code(tpath("raw_nul.safetensors"), &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "raw_nul.safetensors"));
    assert_non_null(strstr(err.msg, "NUL"));
}

/* Every proper prefix of a valid file (either format) fails to open with ECORRUPT. */
static void test_every_truncation_rejected(void **state)
{
    (void)state;
    us_err err;
    float a[4] = { 1, 2, 3, 4 };
    us_tensor_desc d[2] = {
        { .name = "w", .dtype = US_DTYPE_F32, .ndim = 2, .shape = { 2, 1 }, .data = a },
        { .name = "v", .dtype = US_DTYPE_F16, .ndim = 1, .shape = { 4 }, .data = a },
    };
    const char *src[2] = { tpath("full.safetensors"), tpath("full.npy") };
    assert_int_equal(us_tf_write(src[0], US_TF_SAFETENSORS, d, 2, false, &err), US_OK);
    assert_int_equal(us_tf_write(src[1], US_TF_NPY, d, 1, false, &err), US_OK);
    for (int s = 0; s < 2; s++) {
        size_t n;
        uint8_t *full = read_raw(src[s], &n);
        for (size_t len = 0; len < n; len++) {
            const char *p = tpath("cut.bin");
            write_raw(p, full, len);
            int rc = open_code(p, &err);
            if (rc != US_ECORRUPT || strstr(err.msg, "cut.bin") == NULL)
                fail_msg("%s cut to %zu of %zu bytes: rc %d '%s'", src[s], len, n, rc, err.msg);
        }
        free(full);
    }
}

/* A file truncated after open: reads fail with ECORRUPT naming file and tensor. */
static void test_truncated_after_open(void **state)
{
    (void)state;
    us_err err;
    float a[64] = {0};
    us_tensor_desc d = { .name = "big", .dtype = US_DTYPE_F32, .ndim = 2, .shape = { 16, 4 }, .data = a };
    const char *p = tpath("shrink.safetensors");
    assert_int_equal(us_tf_write(p, US_TF_SAFETENSORS, &d, 1, false, &err), US_OK);
    us_tensor_file *f;
    assert_int_equal(us_tf_open(p, &f, &err), US_OK);
    assert_int_equal(truncate(p, 100), 0);
    float buf[64];
    assert_int_equal(us_tf_read(f, us_tf_tensor(f, 0), buf, sizeof buf, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "shrink.safetensors"));
    assert_non_null(strstr(err.msg, "big"));
    us_tf_close(f);
}

static void test_writer_errors_leave_target(void **state)
{
    (void)state;
    us_err err;
    float a[6] = { 1, 2, 3, 4, 5, 6 };
    us_tensor_desc d[2] = {
        { .name = "x", .dtype = US_DTYPE_F32, .ndim = 1, .shape = { 6 }, .data = a },
        { .name = "x", .dtype = US_DTYPE_F32, .ndim = 1, .shape = { 6 }, .data = a },
    };
    const char *p = tpath("w.safetensors");
    assert_int_equal(us_tf_write(p, US_TF_SAFETENSORS, d, 2, false, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "used twice"));
    assert_int_equal(us_tf_write(p, US_TF_NPY, d, 2, false, &err), US_EINVAL);
    d[1].name = "bad\"name";
    assert_int_equal(us_tf_write(p, US_TF_SAFETENSORS, d, 2, false, &err), US_EINVAL);
    d[1].name = "__metadata__";
    assert_int_equal(us_tf_write(p, US_TF_SAFETENSORS, d, 2, false, &err), US_EINVAL);
    struct stat st;
    assert_int_not_equal(stat(p, &st), 0);

    /* streaming: too few bytes at commit -> error, no file, no temp left */
    us_tf_writer w;
    assert_int_equal(us_tf_writer_open(&w, p, US_TF_SAFETENSORS, d, 1, false, &err), US_OK);
    assert_int_equal(us_tf_writer_append(&w, a, 8, &err), US_OK);
    assert_int_equal(us_tf_writer_append(&w, a, 24, &err), US_EINVAL);   /* too many */
    assert_int_equal(us_tf_writer_commit(&w, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "8 of 24"));
    assert_int_not_equal(stat(p, &st), 0);
    /* streaming in chunks, then overwrite an existing file */
    assert_int_equal(us_tf_writer_open(&w, p, US_TF_SAFETENSORS, d, 1, false, &err), US_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(us_tf_writer_append(&w, &a[i], 4, &err), US_OK);
    assert_int_equal(us_tf_writer_commit(&w, &err), US_OK);
    a[0] = 42;
    assert_int_equal(us_tf_write(p, US_TF_SAFETENSORS, d, 1, true, &err), US_OK);
    us_tensor_file *f;
    assert_int_equal(us_tf_open(p, &f, &err), US_OK);
    float back[6];
    assert_int_equal(us_tf_read(f, us_tf_tensor(f, 0), back, sizeof back, &err), US_OK);
    assert_true(back[0] == 42.0f && back[5] == 6.0f);
    us_tf_close(f);
    /* abort leaves no temp files behind */
    assert_int_equal(us_tf_writer_open(&w, tpath("gone.npy"), US_TF_NPY, d, 1, false, &err), US_OK);
    us_tf_writer_abort(&w);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", tmpdir);
    assert_int_not_equal(system(cmd), 0);
    assert_int_not_equal(stat(tpath("gone.npy"), &st), 0);
}

/* Random byte mutations of valid files (headers and lengths): open either
 * succeeds with every tensor inside the file, or fails cleanly. Run under
 * ASan by `make asan`, this is a small fuzz test of both parsers. */
static void test_mutations_never_crash(void **state)
{
    (void)state;
    us_err err;
    float a[6] = { 1, 2, 3, 4, 5, 6 };
    us_tensor_desc d[2] = {
        { .name = "alpha", .dtype = US_DTYPE_F32, .ndim = 2, .shape = { 3, 1 }, .data = a },
        { .name = "beta", .dtype = US_DTYPE_BF16, .ndim = 1, .shape = { 6 }, .data = a },
    };
    const char *src[2] = { tpath("fz.safetensors"), tpath("fz.npy") };
    assert_int_equal(us_tf_write(src[0], US_TF_SAFETENSORS, d, 2, false, &err), US_OK);
    assert_int_equal(us_tf_write(src[1], US_TF_NPY, d, 1, false, &err), US_OK);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int opened = 0, refused = 0;
    for (int s = 0; s < 2; s++) {
        size_t n;
        uint8_t *full = read_raw(src[s], &n);
        uint8_t *m = malloc(n);
        for (int iter = 0; iter < 1500; iter++) {
            memcpy(m, full, n);
            int flips = 1 + iter % 3;
            for (int k = 0; k < flips; k++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                size_t hdr = n - 24 + 1;            /* mutate the header part only */
                size_t pos = (size_t)(x % hdr);
                m[pos] = (uint8_t)(x >> 32);
            }
            const char *p = tpath("fz.bin");
            write_raw(p, m, n);
            us_tensor_file *f = NULL;
            if (us_tf_open(p, &f, &err) == US_OK) {
                opened++;
                for (size_t i = 0; i < us_tf_count(f); i++) {
                    const us_tensor_info *t = us_tf_tensor(f, i);
                    assert_true(t->offset_bytes + t->nbytes <= n);
                    uint8_t buf[64];
                    if (t->nbytes <= sizeof buf)
                        assert_int_equal(us_tf_read(f, t, buf, sizeof buf, &err), US_OK);
                }
                us_tf_close(f);
            } else {
                refused++;
                assert_null(f);
                assert_true(err.msg[0] != '\0');
            }
        }
        free(m);
        free(full);
    }
    assert_true(refused > 1000);     /* the mutations mostly break the headers */
    (void)opened;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_roundtrip),
        cmocka_unit_test(test_npy_roundtrip_all_dtypes),
        cmocka_unit_test(test_npy_headers),
        cmocka_unit_test(test_safetensors_bad),
        cmocka_unit_test(test_dtype_strings_exact),
        cmocka_unit_test(test_every_truncation_rejected),
        cmocka_unit_test(test_truncated_after_open),
        cmocka_unit_test(test_writer_errors_leave_target),
        cmocka_unit_test(test_mutations_never_crash),
    };
    return cmocka_run_group_tests(tests, us_test_tmpdir_setup, us_test_tmpdir_teardown);
}
