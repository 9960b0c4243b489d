/*
 * test_store.c — store layout, write, open (RAM and mmap), views, reads,
 * synthetic tables, and every integrity failure: corrupt block, truncated
 * or missing shard file, corrupt or truncated manifest, shard count mismatch.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/tmpdir.h"

#include "proto/placement.h"
#include "proto/ultrashard.pb-c.h"
#include "shard/crc32c.h"
#include "shard/rowcodec.h"
#include "shard/store.h"
#include "shard/store_write.h"
#include "shard/synthetic.h"
#include "tests/unit/store_fixture.h"

#define tmpdir us_test_tmpdir

/* Builds a store of the given tables with `shards` shards at dir. */
static void build(const char *dir, us_table_layout *tables, size_t n, uint32_t shards)
{
    assert_int_equal(us_fixture_build(dir, tables, n, shards), 0);
}

static const char *sub(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

#define tbl us_fixture_table

static void test_layout(void **state)
{
    (void)state;
    us_err err;
    us_table_layout t = tbl(0, "v", 1000, 3, US_DTYPE_F32, 4);
    assert_int_equal(us_table_layout_init(&t, &err), US_OK);
    assert_int_equal(t.rows_per_block, 16);
    assert_int_equal(t.n_blocks, 63);                 /* ceil(1000 / 16) */
    assert_int_equal(t.row_bytes, 12);
    assert_int_equal(t.block_slot_bytes, 4096);
    assert_int_equal(us_layout_block_rows(&t, 62), 1000 - 62 * 16);
    assert_int_equal(us_layout_block_rows(&t, 63), 0);
    us_table_layout q = tbl(1, "q", 1 << 20, 256, US_DTYPE_INT8, 12);
    assert_int_equal(us_table_layout_init(&q, &err), US_OK);
    assert_int_equal(q.scales_offset_bytes, 4096 * 256);
    assert_int_equal(q.block_slot_bytes, 4096 * 256 + 4096 * 4);
    uint64_t total = 0;
    for (uint32_t s = 0; s < 3; s++)
        total += us_layout_shard_blocks(&t, 3, s, NULL);
    assert_int_equal(total, 63);
    us_table_layout bad = tbl(0, "", 10, 3, US_DTYPE_F32, 4);
    assert_int_equal(us_table_layout_init(&bad, &err), US_EINVAL);
    bad = tbl(0, "x", 10, 0, US_DTYPE_F32, 4);
    assert_int_equal(us_table_layout_init(&bad, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "'x'"));
    bad = tbl(0, "x", 10, 4, (us_dtype)7, 4);
    assert_int_equal(us_table_layout_init(&bad, &err), US_EINVAL);
    bad = tbl(0, "x", 10, 4, US_DTYPE_F32, 40);
    assert_int_equal(us_table_layout_init(&bad, &err), US_EINVAL);
    bad = tbl(0, "x", 0, 4, US_DTYPE_F32, 4);
    assert_int_equal(us_table_layout_init(&bad, &err), US_EINVAL);
}

/* Every row of every table reads back as its reference value, through the
 * view (pointer arithmetic as the kernels do it) and through read_row. */
static void check_all_rows(us_store *st, uint32_t shards, int shard_index)
{
    us_err err;
    const us_manifest *m = us_store_manifest(st);
    uint8_t want[4096], got[4096];
    for (size_t i = 0; i < m->n_tables; i++) {
        const us_table_layout *t = &m->tables[i];
        us_rows_view v;
        int vrc = us_store_view(st, i, &v, &err);
        assert_int_equal(vrc, t->synthetic ? US_EUNSUPP : US_OK);
        uint64_t local = 0, checked = 0;
        /* synthetic tables: 5000 rows spread over the whole id range */
        uint64_t step = t->synthetic ? t->rows / 5000 : 1;
        for (uint64_t row = 0; row < t->rows; row += step) {
            checked++;
            float wscale = 0, gscale = -1;
            assert_int_equal(us_synth_row(want, &wscale, t->dtype, t->synthetic ? t->synthetic_seed : US_FIXTURE_SEED,
                                          t->table_id, row, t->dim, &err), US_OK);
            int owner = us_placement_shard(t->table_id, row >> t->block_bits, t->placement_seed,
                                           (int)shards);
            bool is_local = shard_index == US_STORE_ALL_SHARDS || owner == shard_index;
            assert_int_equal(us_store_has_row(st, i, row), is_local);
            int rc = us_store_read_row(st, i, row, got, &gscale, &err);
            if (!is_local) {
                assert_int_equal(rc, US_ENOTFOUND);
                if (!t->synthetic)
                    assert_null(us_rows_view_row(&v, row));
                continue;
            }
            local++;
            assert_int_equal(rc, US_OK);
            assert_memory_equal(got, want, t->row_bytes);
            if (!t->synthetic) {
                const uint8_t *p = us_rows_view_row(&v, row);
                assert_non_null(p);
                assert_memory_equal(p, want, t->row_bytes);
                assert_int_equal((uintptr_t)v.blocks[row >> v.block_bits] % 4096, 0);
            }
            if (t->dtype == US_DTYPE_INT8) {
                assert_true(gscale == wscale);
                if (!t->synthetic)
                    assert_true(us_rows_view_scale(&v, row) == wscale);
            }
        }
        if (shard_index == US_STORE_ALL_SHARDS)
            assert_int_equal(local, checked);
        assert_int_equal(us_store_read_row(st, i, t->rows, got, NULL, &err), US_ERANGE);
    }
}

static void test_write_open_read_all_backends(void **state)
{
    (void)state;
    us_err err = {0};
    us_table_layout tables[5] = {
        tbl(0, "f32", 1000, 7, US_DTYPE_F32, 4),
        tbl(1, "bf16", 300, 16, US_DTYPE_BF16, 5),
        tbl(2, "f16", 65, 3, US_DTYPE_F16, 6),
        tbl(7, "int8", 257, 33, US_DTYPE_INT8, 3),
        tbl(3, "synth", 100000000000ull, 64, US_DTYPE_BF16, 12),
    };
    tables[4].synthetic = true;
    tables[4].synthetic_seed = 123;
    const char *dir = sub("s3");
    build(dir, tables, 5, 3);
    /* on disk, every byte of every slot outside the valid rows (and int8
     * scales) is zero: padding carries no stale memory */
    for (int ti = 0; ti < 4; ti++) {
        const us_table_layout *t = &tables[ti];
        for (uint32_t s = 0; s < 3; s++) {
            char path[1024], name[64];
            us_shard_file_name(name, sizeof name, t->table_id, s);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            uint64_t n = us_layout_shard_blocks(t, 3, s, NULL);
            uint64_t *ids = malloc((n + 1) * sizeof *ids);
            us_layout_shard_blocks(t, 3, s, ids);
            FILE *f = fopen(path, "rb");
            assert_non_null(f);
            uint8_t *slot = malloc(t->block_slot_bytes);
            /* the identity header comes first */
            assert_int_equal(fread(slot, 1, US_SHARD_HEADER_BYTES, f), US_SHARD_HEADER_BYTES);
            assert_memory_equal(slot, "USSHARD", 8);
            assert_int_equal(slot[12], t->table_id);
            assert_int_equal(slot[32], s);
            for (uint64_t k = 0; k < n; k++) {
                assert_int_equal(fread(slot, 1, t->block_slot_bytes, f), t->block_slot_bytes);
                uint64_t rows = us_layout_block_rows(t, ids[k]);
                for (uint64_t b = 0; b < t->block_slot_bytes; b++) {
                    bool data = b < rows * t->row_bytes;
                    bool scale = t->dtype == US_DTYPE_INT8 && b >= t->scales_offset_bytes &&
                                 b < t->scales_offset_bytes + rows * 4;
                    if (!data && !scale && slot[b] != 0)
                        fail_msg("%s block %llu byte %llu is %u", path,
                                 (unsigned long long)ids[k], (unsigned long long)b, slot[b]);
                }
            }
            assert_int_equal(fgetc(f), EOF);
            fclose(f);
            free(slot);
            free(ids);
        }
    }
    /* a second build at the same place is refused and changes nothing */
    char stage[512];
    assert_int_equal(us_stage_begin(dir, stage, sizeof stage, &err), US_EEXIST);

    for (int backend = 0; backend < 2; backend++)
        for (int shard = -1; shard < 3; shard++) {
            us_store_opts o = { .backend = (us_backend)backend, .shard_index = shard,
                                .verify = true, .expect_shards = 3 };
            us_store *st;
            if (us_store_open(dir, &o, &st, &err) != US_OK)
                fail_msg("open backend %d shard %d: %s", backend, shard, err.msg);
            assert_int_equal(us_store_manifest(st)->n_tables, 5);
            check_all_rows(st, 3, shard);
            us_verify_report rep;
            assert_int_equal(us_store_verify(st, false, &rep, &err), US_OK);
            assert_int_equal(rep.blocks_bad, 0);
            if (shard == -1)
                assert_int_equal(rep.blocks_checked, 63 + 10 + 2 + 33);
            size_t idx;
            assert_int_equal(us_store_find_table(st, "int8", &idx, &err), US_OK);
            assert_int_equal(idx, 3);
            assert_int_equal(us_store_find_table(st, "7", &idx, &err), US_OK);
            assert_int_equal(idx, 3);
            assert_int_equal(us_store_find_table(st, "nope", &idx, &err), US_ENOTFOUND);
            us_store_close(st);
        }
    /* synthetic rows far beyond 2^32 read back as the pure function says */
    us_store_opts o = { .backend = US_BACKEND_MMAP, .shard_index = US_STORE_ALL_SHARDS };
    us_store *st;
    assert_int_equal(us_store_open(dir, &o, &st, &err), US_OK);
    uint16_t row[64];
    assert_int_equal(us_store_read_row(st, 4, 99999999999ull, row, NULL, &err), US_OK);
    assert_int_equal(row[5], us_f32_to_bf16(us_synth_value(123, 3, 99999999999ull, 5)));
    us_store_close(st);
    /* shard count mismatch, bad shard index */
    o.expect_shards = 4;
    assert_int_equal(us_store_open(dir, &o, &st, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "shard count mismatch"));
    o.expect_shards = 0;
    o.shard_index = 3;
    assert_int_equal(us_store_open(dir, &o, &st, &err), US_EINVAL);
}

static void copy_dir(const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r %s %s", to, from, to);
    assert_int_equal(system(cmd), 0);
}

static void flip_byte(const char *path, long offset)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, offset, offset < 0 ? SEEK_END : SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, -1, SEEK_CUR), 0);
    fputc(c ^ 0x20, f);
    fclose(f);
}

static void test_corruption_detected(void **state)
{
    (void)state;
    us_err err;
    us_table_layout tables[2] = {
        tbl(0, "vals", 500, 8, US_DTYPE_F32, 4),
        tbl(1, "q", 200, 8, US_DTYPE_INT8, 4),
    };
    const char *good = sub("good");
    build(good, tables, 2, 2);
    const char *bad = sub("bad");
    us_store *st;
    us_store_opts ram = { .backend = US_BACKEND_RAM, .shard_index = US_STORE_ALL_SHARDS };
    us_store_opts mm = { .backend = US_BACKEND_MMAP, .shard_index = US_STORE_ALL_SHARDS };
    us_store_opts mmv = mm;
    mmv.verify = true;
    char path[1024];

    /* one flipped byte in the 3rd slot of table 0, shard 1 */
    copy_dir(good, bad);
    snprintf(path, sizeof path, "%s/table-0.shard-1.bin", bad);
    uint64_t ids[64];
    uint64_t n = us_layout_shard_blocks(&tables[0], 2, 1, ids);
    assert_true(n >= 3);
    flip_byte(path, US_SHARD_HEADER_BYTES + 2 * 4096 + 17);
    char needle[64];
    snprintf(needle, sizeof needle, "block %llu in file", (unsigned long long)ids[2]);
    assert_int_equal(us_store_open(bad, &ram, &st, &err), US_ECORRUPT);   /* never served */
    assert_non_null(strstr(err.msg, "'vals'"));
    assert_non_null(strstr(err.msg, needle));
    assert_non_null(strstr(err.msg, "table-0.shard-1.bin"));
    assert_int_equal(us_store_open(bad, &mmv, &st, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, needle));
    /* a small store is checked at open by default (AUTO) */
    assert_int_equal(us_store_open(bad, &mm, &st, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, needle));
    /* check on first use: opens without a scan; the bad block is refused on
     * use (and stays refused), the others serve; verify finds exactly one */
    us_store_opts mmf = mm;
    mmf.check = US_STORE_CHECK_FIRST_USE;
    assert_int_equal(us_store_open(bad, &mmf, &st, &err), US_OK);
    float row[8], scale;
    uint64_t bad_row = ids[2] << 4, good_row = ids[1] << 4;
    for (int again = 0; again < 2; again++) {
        err.msg[0] = '\0';
        assert_int_equal(us_store_read_row(st, 0, bad_row, row, &scale, &err), US_ECORRUPT);
        assert_non_null(strstr(err.msg, needle));
        assert_non_null(strstr(err.msg, "table-0.shard-1.bin"));
    }
    assert_int_equal(us_store_read_row(st, 0, good_row, row, &scale, &err), US_OK);
    uint64_t mixed[3] = { good_row, bad_row + 3, good_row + 1 };
    assert_int_equal(us_store_check_rows(st, 0, mixed, 3, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, needle));
    assert_int_equal(us_store_check_rows(st, 0, mixed, 1, &err), US_OK);
    assert_int_equal(us_store_check_table(st, 0, &err), US_ECORRUPT);
    assert_int_equal(us_store_check_table(st, 1, &err), US_OK);
    us_store_close(st);
    assert_int_equal(us_store_open(bad, &mmf, &st, &err), US_OK);
    us_verify_report rep;
    assert_int_equal(us_store_verify(st, false, &rep, &err), US_ECORRUPT);
    assert_int_equal(rep.blocks_bad, 1);
    assert_non_null(strstr(err.msg, needle));
    us_store_close(st);
    /* a flipped int8 scale is caught too */
    copy_dir(good, bad);
    snprintf(path, sizeof path, "%s/table-1.shard-0.bin", bad);
    flip_byte(path, (long)(US_SHARD_HEADER_BYTES + tables[1].scales_offset_bytes + 2));
    assert_int_equal(us_store_open(bad, &ram, &st, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "'q'"));
    /* padding bytes beyond the valid rows are not part of the block */
    copy_dir(good, bad);
    snprintf(path, sizeof path, "%s/table-0.shard-0.bin", bad);
    flip_byte(path, US_SHARD_HEADER_BYTES + 4096 - 1);
    assert_int_equal(us_store_open(bad, &ram, &st, &err), US_OK);
    us_store_close(st);

    /* truncated shard file: refused on every backend, naming block and file */
    copy_dir(good, bad);
    snprintf(path, sizeof path, "%s/table-0.shard-1.bin", bad);
    assert_int_equal(truncate(path, US_SHARD_HEADER_BYTES + 4096 * 2 + 100), 0);
    snprintf(needle, sizeof needle, "block %llu in file", (unsigned long long)ids[2]);
    assert_int_equal(us_store_open(bad, &mm, &st, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_non_null(strstr(err.msg, needle));
    /* missing shard file: only the shard that needs it fails */
    copy_dir(good, bad);
    unlink(path);
    assert_int_equal(us_store_open(bad, &mm, &st, &err), US_ENOTFOUND);
    assert_non_null(strstr(err.msg, "table-0.shard-1.bin"));
    us_store_opts s0 = mm;
    s0.shard_index = 0;
    assert_int_equal(us_store_open(bad, &s0, &st, &err), US_OK);
    us_store_close(st);

    /* manifest: every single flipped byte and every truncation is refused */
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s/manifest.pb", good);
    FILE *f = fopen(mpath, "rb");
    assert_non_null(f);
    uint8_t mbuf[8192];
    size_t mlen = fread(mbuf, 1, sizeof mbuf, f);
    fclose(f);
    assert_true(mlen > 20 && mlen < sizeof mbuf);
    snprintf(mpath, sizeof mpath, "%s/manifest.pb", bad);
    for (size_t cut = 0; cut < mlen; cut += 1 + cut / 16) {
        f = fopen(mpath, "wb");
        fwrite(mbuf, 1, cut, f);
        fclose(f);
        assert_int_equal(us_store_open(bad, &mm, &st, &err), US_ECORRUPT);
        assert_non_null(strstr(err.msg, "manifest.pb"));
    }
    for (size_t pos = 0; pos < mlen; pos += 7) {
        mbuf[pos] ^= 0x01;
        f = fopen(mpath, "wb");
        fwrite(mbuf, 1, mlen, f);
        fclose(f);
        mbuf[pos] ^= 0x01;
        if (us_store_open(bad, &mm, &st, &err) != US_ECORRUPT)
            fail_msg("flipped manifest byte %zu accepted", pos);
    }
    unlink(mpath);
    assert_int_equal(us_store_open(bad, &mm, &st, &err), US_ENOTFOUND);
    assert_non_null(strstr(err.msg, "manifest.pb"));
}

/* A manifest that is well-formed (valid CRC) but lies about the layout. */
static void test_manifest_semantics(void **state)
{
    (void)state;
    us_err err;
    us_table_layout t = tbl(4, "x", 100, 4, US_DTYPE_F16, 3);
    assert_int_equal(us_table_layout_init(&t, &err), US_OK);
    const char *dir = sub("sem");
    mkdir(dir, 0755);
    us_manifest m, back;
    assert_int_equal(us_manifest_alloc(&m, 2, 1, &err), US_OK);
    assert_int_equal(us_manifest_set_table(&m, 0, &t, &err), US_OK);
    m.block_crc[0][3] = 0xabcdef01u;
    assert_int_equal(us_manifest_write(dir, &m, &err), US_OK);
    assert_int_equal(us_manifest_read(dir, &back, &err), US_OK);
    assert_int_equal(back.shard_count, 2);
    assert_int_equal(back.n_tables, 1);
    assert_string_equal(back.tables[0].name, "x");
    assert_int_equal(back.tables[0].table_id, 4);
    assert_int_equal(back.tables[0].dtype, US_DTYPE_F16);
    assert_int_equal(back.tables[0].n_blocks, 13);
    assert_int_equal(back.block_crc[0][3], 0xabcdef01u);
    us_manifest_free(&back);
    /* a newer format version is refused */
    m.format_version = US_STORE_FORMAT_VERSION + 1;
    assert_int_equal(us_manifest_write(dir, &m, &err), US_OK);
    assert_int_equal(us_manifest_read(dir, &back, &err), US_EVERSION);
    m.format_version = US_STORE_FORMAT_VERSION;
    /* duplicate table names */
    us_manifest two;
    assert_int_equal(us_manifest_alloc(&two, 2, 2, &err), US_OK);
    assert_int_equal(us_manifest_set_table(&two, 0, &t, &err), US_OK);
    t.table_id = 5;
    assert_int_equal(us_manifest_set_table(&two, 1, &t, &err), US_OK);
    assert_int_equal(us_manifest_write(dir, &two, &err), US_OK);
    assert_int_equal(us_manifest_read(dir, &back, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "twice"));
    us_manifest_free(&two);
    us_manifest_free(&m);
}

/* A corrupt manifest whose rows / block_bits claim 2^40 blocks but that
 * lists one block CRC: refused as corrupt before anything is sized by the
 * claim (it used to calloc 4 TiB first; found by tests/fuzz/fuzz_manifest.c). */
static void test_manifest_block_count_lie(void **state)
{
    (void)state;
    Ultrashard__TableManifest tm = ULTRASHARD__TABLE_MANIFEST__INIT;
    tm.version = 1;
    tm.name = (char *)"big";
    tm.rows = 1ull << 40;
    tm.dim = 1;
    tm.dtype = ULTRASHARD__DTYPE__DTYPE_F32;
    tm.block_bits = 0;
    tm.shard_count = 1;
    uint32_t one_crc = 0;
    tm.n_block_crc32c = 1;
    tm.block_crc32c = &one_crc;
    Ultrashard__TableManifest *tables[1] = { &tm };
    Ultrashard__StoreManifest sm = ULTRASHARD__STORE_MANIFEST__INIT;
    sm.version = 1;
    sm.format_version = US_STORE_FORMAT_VERSION;
    sm.shard_count = 1;
    sm.n_tables = 1;
    sm.tables = tables;
    size_t n = ultrashard__store_manifest__get_packed_size(&sm);
    uint8_t *buf = malloc(n + 5);
    assert_non_null(buf);
    ultrashard__store_manifest__pack(&sm, buf);
    uint32_t crc = us_crc32c(0, buf, n);
    buf[n] = 0x35;   /* field 6, fixed32: the manifest's checksum, written last */
    for (int i = 0; i < 4; i++)
        buf[n + 1 + i] = (uint8_t)(crc >> (8 * i));
    const char *dir = sub("lie");
    mkdir(dir, 0755);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, US_MANIFEST_FILE);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n + 5, f), n + 5);
    assert_int_equal(fclose(f), 0);
    free(buf);
    us_manifest m;
    us_err err = {0};
    assert_int_equal(us_manifest_read(dir, &m, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "1 block checksums for 1099511627776 blocks"));
}

/* A table far larger than this machine's RAM (64 GiB, sparse shard files):
 * the mmap backend opens it without reading it (no scan without verify),
 * rows anywhere in it are served, and resident memory stays small. */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_mmap_table_larger_than_ram(void **state)
{
    (void)state;
    us_err err = {0};
    const char *dir = sub("huge");
    assert_int_equal(mkdir(dir, 0755), 0);
    us_table_layout t = tbl(0, "huge", 16ull << 20, 1024, US_DTYPE_F32, 12);   /* 64 GiB */
    assert_int_equal(us_table_layout_init(&t, &err), US_OK);
    us_manifest m;
    assert_int_equal(us_manifest_alloc(&m, 2, 1, &err), US_OK);
    assert_int_equal(us_manifest_set_table(&m, 0, &t, &err), US_OK);
    for (uint32_t s = 0; s < 2; s++) {
        char name[64], path[1024];
        us_shard_file_name(name, sizeof name, 0, s);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        uint8_t header[US_SHARD_HEADER_BYTES];
        us_shard_header h = us_shard_header_expected(&m.tables[0], 2, s);
        us_shard_header_encode(header, &h);
        assert_int_equal(fwrite(header, 1, sizeof header, f), sizeof header);
        fclose(f);
        uint64_t n = us_layout_shard_blocks(&t, 2, s, NULL);
        if (truncate(path, (off_t)us_layout_file_bytes(&m.tables[0], n)) != 0) {
            us_manifest_free(&m);
            skip();        /* file system without sparse files of this size */
        }
    }
    assert_int_equal(us_manifest_write(dir, &m, &err), US_OK);
    us_manifest_free(&m);
    long before = rss_kb();
    us_store_opts o = { .backend = US_BACKEND_MMAP, .shard_index = US_STORE_ALL_SHARDS };
    us_store *st;
    assert_int_equal(us_store_open(dir, &o, &st, &err), US_OK);
    assert_int_equal(us_store_local_bytes(st), (64ull << 30) + 2 * US_SHARD_HEADER_BYTES);
    us_rows_view v;
    assert_int_equal(us_store_view(st, 0, &v, &err), US_OK);
    float sum = 0;
    for (uint64_t r = 0; r < v.rows; r += 999983)      /* ~17 rows across 64 GiB */
        sum += ((const float *)us_rows_view_row(&v, r))[1023];
    assert_true(sum == 0.0f);                           /* sparse: zeros */
    long after = rss_kb();
    if (before > 0 && after > 0)
        assert_true(after - before < 64 * 1024);        /* < 64 MiB resident for 64 GiB */
    us_store_close(st);
}

/* Rewrites path without its first `cut` bytes (a format 1 file). */
static void strip_head(const char *path, long cut)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n >= (size_t)cut && n < sizeof buf);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf + cut, 1, n - (size_t)cut, f), n - (size_t)cut);
    fclose(f);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

/* Swapped, foreign and zeroed shard files are refused at open naming the
 * file; a format 1 store (no headers) still opens and serves the same rows. */
static void test_identity_header(void **state)
{
    (void)state;
    us_err err;
    us_table_layout tables[1] = { tbl(0, "vals", 600, 8, US_DTYPE_F32, 4) };
    const char *a = sub("idA"), *b = sub("idB"), *bad = sub("idBad");
    build(a, tables, 1, 3);
    build(b, tables, 1, 3);
    us_store *st;
    us_store_opts mm = { .backend = US_BACKEND_MMAP, .shard_index = US_STORE_ALL_SHARDS,
                         .check = US_STORE_CHECK_FIRST_USE };
    char p1[1024], p2[1024], tmp[1024];
    /* swap shard files 1 and 2 */
    copy_dir(a, bad);
    snprintf(p1, sizeof p1, "%s/table-0.shard-1.bin", bad);
    snprintf(p2, sizeof p2, "%s/table-0.shard-2.bin", bad);
    snprintf(tmp, sizeof tmp, "%s/x", bad);
    assert_int_equal(rename(p1, tmp), 0);
    assert_int_equal(rename(p2, p1), 0);
    assert_int_equal(rename(tmp, p2), 0);
    assert_int_equal(us_store_open(bad, &mm, &st, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "table-0.shard-1.bin"));
    /* the same file from another store with the same layout */
    copy_dir(a, bad);
    snprintf(tmp, sizeof tmp, "%s/table-0.shard-1.bin", b);
    copy_file(tmp, p1);
    assert_int_equal(us_store_open(bad, &mm, &st, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "belongs to another store"));
    assert_non_null(strstr(err.msg, "table-0.shard-1.bin"));
    /* zeroed header */
    copy_dir(a, bad);
    FILE *f = fopen(p2, "r+b");
    assert_non_null(f);
    static const uint8_t zeros[US_SHARD_HEADER_BYTES];
    assert_int_equal(fwrite(zeros, 1, sizeof zeros, f), sizeof zeros);
    fclose(f);
    assert_int_equal(us_store_open(bad, &mm, &st, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "no UltraShard header"));
    assert_non_null(strstr(err.msg, "table-0.shard-2.bin"));
    /* format 1: manifest says 1, files have no header: opens, same rows */
    copy_dir(a, bad);
    us_manifest m;
    assert_int_equal(us_manifest_read(bad, &m, &err), US_OK);
    m.format_version = US_STORE_FORMAT_NO_HEADER;
    m.store_id_hi = m.store_id_lo = 0;
    m.tables[0].file_header_bytes = 0;      /* what set_table stamps for format 1 */
    assert_int_equal(us_manifest_write(bad, &m, &err), US_OK);
    us_manifest_free(&m);
    for (int s = 0; s < 3; s++) {
        snprintf(tmp, sizeof tmp, "%s/table-0.shard-%d.bin", bad, s);
        strip_head(tmp, US_SHARD_HEADER_BYTES);
    }
    us_store *v1, *v2;
    assert_int_equal(us_store_open(bad, &mm, &v1, &err), US_OK);
    assert_int_equal(us_store_manifest(v1)->format_version, 1);
    assert_int_equal(us_store_open(a, &mm, &v2, &err), US_OK);
    assert_int_equal(us_store_verify(v1, false, NULL, &err), US_OK);
    for (uint64_t r = 0; r < 600; r += 7) {
        float x[8], y[8], sc;
        assert_int_equal(us_store_read_row(v1, 0, r, x, &sc, &err), US_OK);
        assert_int_equal(us_store_read_row(v2, 0, r, y, &sc, &err), US_OK);
        assert_memory_equal(x, y, sizeof x);
    }
    us_store_close(v1);
    us_store_close(v2);
}

/* Scrub: a block damaged after open is found by bounded steps, reported,
 * and refused on use from then on; the others still serve. */
static void test_scrub(void **state)
{
    (void)state;
    us_err err;
    us_table_layout tables[2] = {
        tbl(0, "vals", 600, 8, US_DTYPE_F32, 4),
        tbl(1, "q", 300, 16, US_DTYPE_INT8, 4),
    };
    const char *dir = sub("scrub");
    build(dir, tables, 2, 2);
    us_store *st;
    us_store_opts o = { .backend = US_BACKEND_MMAP, .shard_index = US_STORE_ALL_SHARDS };
    assert_int_equal(us_store_open(dir, &o, &st, &err), US_OK);   /* small: checked at open */
    us_scrub_report rep;
    assert_int_equal(us_store_scrub_step(st, UINT64_MAX, &rep, &err), US_OK);
    uint64_t blocks = tables[0].n_blocks + tables[1].n_blocks;
    assert_int_equal(rep.blocks_checked, blocks);
    assert_int_equal(rep.blocks_bad, 0);
    assert_true(rep.wrapped);
    /* damage block ids[1] of table 0 in shard 1's file under the open map */
    uint64_t ids[64];
    assert_true(us_layout_shard_blocks(&tables[0], 2, 1, ids) >= 2);
    char path[1024];
    snprintf(path, sizeof path, "%s/table-0.shard-1.bin", dir);
    flip_byte(path, (long)(US_SHARD_HEADER_BYTES + 4096 + 5));
    uint64_t bad_row = ids[1] << 4, good_row = ids[0] << 4;
    uint64_t checked = 0, bad = 0, steps = 0;
    bool wrapped = false;
    while (!wrapped) {      /* two blocks (8 KiB of slots) per step */
        int rc = us_store_scrub_step(st, 2 * 4096, &rep, &err);
        assert_true(rep.blocks_checked <= 2 || rep.bytes_checked <= 2 * 4096 + 8192);
        checked += rep.blocks_checked;
        bad += rep.blocks_bad;
        if (rc != US_OK) {
            assert_int_equal(rc, US_ECORRUPT);
            char needle[64];
            snprintf(needle, sizeof needle, "block %llu in file", (unsigned long long)ids[1]);
            assert_non_null(strstr(err.msg, needle));
            assert_non_null(strstr(err.msg, "table-0.shard-1.bin"));
        }
        wrapped = rep.wrapped;
        assert_true(++steps < 1000);
    }
    assert_int_equal(checked, blocks);
    assert_int_equal(bad, 1);
    float row[8], sc;
    assert_int_equal(us_store_read_row(st, 0, bad_row, row, &sc, &err), US_ECORRUPT);
    assert_int_equal(us_store_check_rows(st, 0, &bad_row, 1, &err), US_ECORRUPT);
    assert_int_equal(us_store_read_row(st, 0, good_row, row, &sc, &err), US_OK);
    assert_int_equal(us_store_check_table(st, 1, &err), US_OK);
    us_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_write_open_read_all_backends),
        cmocka_unit_test(test_corruption_detected),
        cmocka_unit_test(test_manifest_semantics),
        cmocka_unit_test(test_manifest_block_count_lie),
        cmocka_unit_test(test_mmap_table_larger_than_ram),
        cmocka_unit_test(test_identity_header),
        cmocka_unit_test(test_scrub),
    };
    return cmocka_run_group_tests(tests, us_test_tmpdir_setup, us_test_tmpdir_teardown);
}
