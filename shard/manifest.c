/*
 * manifest.c — table layout math and manifest.pb encode/decode/validate
 * (see manifest.h). The protobuf structs never leave this file: callers see
 * us_manifest, so a schema change touches one place.
 */
#include "shard/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proto/placement.h"
#include "proto/ultrashard.pb-c.h"
#include "shard/crc32c.h"
#include "shard/durable.h"

#define MANIFEST_MAX_BYTES (1ull << 30)
#define CRC_FIELD_TAG 0x35   /* field 6, wire type 5 (fixed32) */

static int us_err_set_code(us_err *err, int code)
{
    if (err)
        err->code = code;
    return code;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

int us_table_layout_init(us_table_layout *t, us_err *err)
{
    const char *nm = t->name ? t->name : "?";
    if (t->name == NULL || t->name[0] == '\0' || strlen(t->name) > 200)
        return us_err_set(err, US_EINVAL, "table %u: name must be 1..200 characters", t->table_id);
    if (us_dtype_name(t->dtype) == NULL)
        return us_err_set(err, US_EINVAL, "table '%s': unknown dtype %d", nm, (int)t->dtype);
    if (t->dim == 0 || t->dim > US_MAX_DIM)
        return us_err_set(err, US_EINVAL, "table '%s': dim %u outside [1, %u]", nm, t->dim,
                          US_MAX_DIM);
    if (t->block_bits > US_MAX_BLOCK_BITS)
        return us_err_set(err, US_EINVAL, "table '%s': block_bits %u above %d", nm,
                          t->block_bits, US_MAX_BLOCK_BITS);
    if (t->rows == 0 || t->rows > (1ull << 50))
        return us_err_set(err, US_EINVAL, "table '%s': rows %llu outside [1, 2^50]", nm,
                          (unsigned long long)t->rows);
    t->rows_per_block = 1ull << t->block_bits;
    t->file_header_bytes = US_SHARD_HEADER_BYTES;   /* format 1: us_manifest_set_table */
    t->n_blocks = (t->rows + t->rows_per_block - 1) >> t->block_bits;
    t->row_bytes = (size_t)t->dim * us_dtype_size(t->dtype);
    uint64_t data = t->rows_per_block * t->row_bytes;
    if (t->dtype == US_DTYPE_INT8) {
        t->scales_offset_bytes = align_up(data, 64);
        t->block_slot_bytes = align_up(t->scales_offset_bytes + t->rows_per_block * 4, US_SLOT_ALIGN);
    } else {
        t->scales_offset_bytes = 0;
        t->block_slot_bytes = align_up(data, US_SLOT_ALIGN);
    }
    if (!t->synthetic && t->block_slot_bytes > (1ull << 32))
        return us_err_set(err, US_EINVAL, "table '%s': block of %llu bytes is too large "
                          "(lower block_bits)", nm, (unsigned long long)t->block_slot_bytes);
    return US_OK;
}

uint64_t us_layout_block_rows(const us_table_layout *t, uint64_t block)
{
    uint64_t first = block << t->block_bits;
    if (first >= t->rows)
        return 0;
    uint64_t left = t->rows - first;
    return left < t->rows_per_block ? left : t->rows_per_block;
}

uint32_t us_layout_block_crc(const us_table_layout *t, const uint8_t *slot, uint64_t block)
{
    uint64_t rows = us_layout_block_rows(t, block);
    uint32_t crc = us_crc32c(0, slot, rows * t->row_bytes);
    if (t->dtype == US_DTYPE_INT8)
        crc = us_crc32c(crc, slot + t->scales_offset_bytes, rows * 4);
    return crc;
}

uint64_t us_layout_shard_blocks(const us_table_layout *t, uint32_t shard_count, uint32_t shard,
                                uint64_t *ids)
{
    uint64_t n = 0;
    for (uint64_t b = 0; b < t->n_blocks; b++)
        if ((uint32_t)us_placement_shard(t->table_id, b, t->placement_seed, (int)shard_count) == shard) {
            if (ids)
                ids[n] = b;
            n++;
        }
    return n;
}

void us_shard_file_name(char *buf, size_t cap, uint32_t table_id, uint32_t shard)
{
    snprintf(buf, cap, "table-%u.shard-%u.bin", table_id, shard);
}

uint64_t us_layout_file_bytes(const us_table_layout *t, uint64_t n_blocks)
{
    return t->file_header_bytes + n_blocks * t->block_slot_bytes;
}

uint64_t us_layout_slot_offset(const us_table_layout *t, uint64_t k)
{
    return t->file_header_bytes + k * t->block_slot_bytes;
}

static const char shard_magic[8] = "USSHARD";
#define HEADER_CRC_AT 56

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

us_shard_header us_shard_header_expected(const us_table_layout *t, uint32_t shard_count,
                                         uint32_t shard)
{
    return (us_shard_header){
        .format_version = US_STORE_FORMAT_VERSION, .table_id = t->table_id, .shard = shard,
        .shard_count = shard_count, .store_id_hi = t->store_id_hi,
        .store_id_lo = t->store_id_lo,
        .n_blocks = us_layout_shard_blocks(t, shard_count, shard, NULL),
        .block_slot_bytes = t->block_slot_bytes,
    };
}

void us_shard_header_encode(uint8_t *buf, const us_shard_header *h)
{
    memset(buf, 0, US_SHARD_HEADER_BYTES);
    memcpy(buf, shard_magic, 8);
    put32(buf + 8, h->format_version);
    put32(buf + 12, h->table_id);
    put64(buf + 16, h->store_id_hi);
    put64(buf + 24, h->store_id_lo);
    put32(buf + 32, h->shard);
    put32(buf + 36, h->shard_count);
    put64(buf + 40, h->n_blocks);
    put64(buf + 48, h->block_slot_bytes);
    put32(buf + HEADER_CRC_AT, us_crc32c(0, buf, HEADER_CRC_AT));
}

int us_shard_header_check(const uint8_t *buf, const us_shard_header *want, const char *path,
                          us_err *err)
{
    if (memcmp(buf, shard_magic, 8) != 0)
        return us_err_set(err, US_ECORRUPT, "shard file '%s' has no UltraShard header "
                          "(zeroed, overwritten or foreign file)", path);
    if (us_crc32c(0, buf, HEADER_CRC_AT) != get32(buf + HEADER_CRC_AT))
        return us_err_set(err, US_ECORRUPT, "shard file '%s': header checksum mismatch "
                          "(corrupt header)", path);
    us_shard_header h = {
        .format_version = get32(buf + 8), .table_id = get32(buf + 12),
        .store_id_hi = get64(buf + 16), .store_id_lo = get64(buf + 24),
        .shard = get32(buf + 32), .shard_count = get32(buf + 36),
        .n_blocks = get64(buf + 40), .block_slot_bytes = get64(buf + 48),
    };
    if (h.format_version != want->format_version)
        return us_err_set(err, US_ECORRUPT, "shard file '%s': format %u, the manifest says "
                          "%u", path, h.format_version, want->format_version);
    if (h.store_id_hi != want->store_id_hi || h.store_id_lo != want->store_id_lo)
        return us_err_set(err, US_ECORRUPT, "shard file '%s' belongs to another store (store "
                          "id %016llx%016llx, the manifest says %016llx%016llx)", path,
                          (unsigned long long)h.store_id_hi, (unsigned long long)h.store_id_lo,
                          (unsigned long long)want->store_id_hi,
                          (unsigned long long)want->store_id_lo);
    if (h.table_id != want->table_id || h.shard != want->shard ||
        h.shard_count != want->shard_count)
        return us_err_set(err, US_ECORRUPT, "shard file '%s' holds table %u shard %u of %u, "
                          "expected table %u shard %u of %u (swapped or renamed file)", path,
                          h.table_id, h.shard, h.shard_count, want->table_id, want->shard,
                          want->shard_count);
    if (h.n_blocks != want->n_blocks || h.block_slot_bytes != want->block_slot_bytes)
        return us_err_set(err, US_ECORRUPT, "shard file '%s': %llu blocks of %llu bytes, the "
                          "manifest says %llu of %llu", path, (unsigned long long)h.n_blocks,
                          (unsigned long long)h.block_slot_bytes,
                          (unsigned long long)want->n_blocks,
                          (unsigned long long)want->block_slot_bytes);
    return US_OK;
}

/* 128 random bits: two stores made in the same second on two hosts must
 * still differ, so the kernel's entropy, with a clock/pid fallback. */
static void new_store_id(uint64_t *hi, uint64_t *lo)
{
    uint64_t id[2];
    if (getrandom(id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id[0] = us_mix64((uint32_t)ts.tv_nsec, (uint64_t)ts.tv_sec, (uint64_t)clock());
        id[1] = us_mix64((uint32_t)getpid(), id[0], (uint64_t)ts.tv_nsec);
    }
    *hi = id[0];
    *lo = id[1];
}

int us_manifest_alloc(us_manifest *m, uint32_t shard_count, size_t n_tables, us_err *err)
{
    memset(m, 0, sizeof *m);
    m->format_version = US_STORE_FORMAT_VERSION;
    new_store_id(&m->store_id_hi, &m->store_id_lo);
    m->shard_count = shard_count;
    m->n_tables = n_tables;
    m->tables = calloc(n_tables ? n_tables : 1, sizeof *m->tables);
    m->block_crc = calloc(n_tables ? n_tables : 1, sizeof *m->block_crc);
    m->names = calloc(n_tables ? n_tables : 1, sizeof *m->names);
    if (m->tables == NULL || m->block_crc == NULL || m->names == NULL) {
        us_manifest_free(m);
        return us_err_set(err, US_ENOMEM, "manifest: out of memory for %zu tables", n_tables);
    }
    return US_OK;
}

int us_manifest_set_table(us_manifest *m, size_t i, const us_table_layout *t, us_err *err)
{
    free(m->names[i]);
    free(m->block_crc[i]);
    m->block_crc[i] = NULL;
    m->tables[i] = *t;
    m->tables[i].store_id_hi = m->store_id_hi;
    m->tables[i].store_id_lo = m->store_id_lo;
    m->tables[i].file_header_bytes =
        m->format_version == US_STORE_FORMAT_NO_HEADER ? 0 : US_SHARD_HEADER_BYTES;
    m->names[i] = strdup(t->name);
    m->tables[i].name = m->names[i];
    if (m->names[i] == NULL)
        return us_err_set(err, US_ENOMEM, "manifest: out of memory");
    if (!t->synthetic) {
        m->block_crc[i] = calloc(t->n_blocks ? t->n_blocks : 1, sizeof(uint32_t));
        if (m->block_crc[i] == NULL)
            return us_err_set(err, US_ENOMEM, "manifest: out of memory for %llu block CRCs "
                              "of table '%s'", (unsigned long long)t->n_blocks, t->name);
    }
    return US_OK;
}

void us_manifest_set_store_id(us_manifest *m, uint64_t hi, uint64_t lo)
{
    m->store_id_hi = hi;
    m->store_id_lo = lo;
    for (size_t i = 0; i < m->n_tables; i++) {
        m->tables[i].store_id_hi = hi;
        m->tables[i].store_id_lo = lo;
    }
}

void us_manifest_free(us_manifest *m)
{
    for (size_t i = 0; i < m->n_tables; i++) {
        if (m->names)
            free(m->names[i]);
        if (m->block_crc)
            free(m->block_crc[i]);
    }
    free(m->names);
    free(m->block_crc);
    free(m->tables);
    memset(m, 0, sizeof *m);
}

int us_manifest_find(const us_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->n_tables; i++)
        if (strcmp(m->tables[i].name, name) == 0)
            return (int)i;
    char *end;
    unsigned long id = strtoul(name, &end, 10);
    if (*name != '\0' && *end == '\0')
        for (size_t i = 0; i < m->n_tables; i++)
            if (m->tables[i].table_id == id)
                return (int)i;
    return -1;
}

/* ---------------------------------------------------------------- write */

/* The protobuf message of a manifest and the arrays it points into; one
 * ShardFile (with its file name and block ids) per (table, shard). */
typedef struct manifest_msg {
    Ultrashard__StoreManifest  sm;
    Ultrashard__TableManifest *tms, **tptr;
    Ultrashard__ShardFile     *sfs, **sptr;
    char      *names;             /* 64 bytes per shard file */
    uint64_t **ids;
    size_t     n_files;
} manifest_msg;

static void msg_free(manifest_msg *msg)
{
    for (size_t k = 0; msg->ids && k < msg->n_files; k++)
        free(msg->ids[k]);
    free(msg->ids);
    free(msg->names);
    free(msg->sptr);
    free(msg->sfs);
    free(msg->tptr);
    free(msg->tms);
}

static int msg_alloc(manifest_msg *msg, const us_manifest *m, const char *dir, us_err *err)
{
    size_t nt = m->n_tables ? m->n_tables : 1;
    msg->n_files = nt * m->shard_count;
    msg->tms = calloc(nt, sizeof *msg->tms);
    msg->tptr = calloc(nt, sizeof *msg->tptr);
    msg->sfs = calloc(msg->n_files, sizeof *msg->sfs);
    msg->sptr = calloc(msg->n_files, sizeof *msg->sptr);
    msg->names = calloc(msg->n_files, 64);
    msg->ids = calloc(msg->n_files, sizeof *msg->ids);
    if (!msg->tms || !msg->tptr || !msg->sfs || !msg->sptr || !msg->names || !msg->ids)
        return us_err_set(err, US_ENOMEM, "manifest of '%s': out of memory", dir);
    return US_OK;
}

static void fill_table_msg(Ultrashard__TableManifest *tm, const us_manifest *m, size_t i)
{
    const us_table_layout *t = &m->tables[i];
    ultrashard__table_manifest__init(tm);
    tm->version = 1;
    tm->table_id = t->table_id;
    tm->name = (char *)t->name;
    tm->rows = t->rows;
    tm->dim = t->dim;
    tm->dtype = (Ultrashard__DType)t->dtype;
    tm->block_bits = t->block_bits;
    tm->shard_count = m->shard_count;
    tm->placement_seed = t->placement_seed;
    tm->placement = ULTRASHARD__PLACEMENT__PLACEMENT_ROW;
    tm->synthetic = t->synthetic;
    tm->synthetic_seed = t->synthetic_seed;
    tm->block_slot_bytes = t->block_slot_bytes;
    tm->scales_offset_bytes = t->scales_offset_bytes;
}

/* Block CRCs and one ShardFile per shard for stored (not synthetic) table i. */
static int fill_shard_files(manifest_msg *msg, const us_manifest *m, size_t i,
                            const char *dir, us_err *err)
{
    const us_table_layout *t = &m->tables[i];
    Ultrashard__TableManifest *tm = &msg->tms[i];
    tm->n_block_crc32c = t->n_blocks;
    tm->block_crc32c = m->block_crc[i];
    tm->n_shard_files = m->shard_count;
    tm->shard_files = &msg->sptr[i * m->shard_count];
    for (uint32_t s = 0; s < m->shard_count; s++) {
        size_t k = i * m->shard_count + s;
        Ultrashard__ShardFile *sf = &msg->sfs[k];
        ultrashard__shard_file__init(sf);
        msg->sptr[k] = sf;
        uint64_t n = us_layout_shard_blocks(t, m->shard_count, s, NULL);
        msg->ids[k] = malloc((n ? n : 1) * sizeof(uint64_t));
        if (msg->ids[k] == NULL)
            return us_err_set(err, US_ENOMEM, "manifest of '%s': out of memory", dir);
        us_layout_shard_blocks(t, m->shard_count, s, msg->ids[k]);
        sf->shard = s;
        us_shard_file_name(msg->names + 64 * k, 64, t->table_id, s);
        sf->file_name = msg->names + 64 * k;
        sf->file_bytes = us_layout_file_bytes(t, n);
        sf->n_block_ids = n;
        sf->block_ids = msg->ids[k];
    }
    return US_OK;
}

/* Packs sm, appends the CRC field (written last, so it covers every byte
 * before it) and writes DIR/manifest.pb crash-safely. */
static int write_packed(const char *dir, const Ultrashard__StoreManifest *sm, us_err *err)
{
    size_t len = ultrashard__store_manifest__get_packed_size(sm);
    uint8_t *buf = malloc(len + 5);
    if (buf == NULL)
        return us_err_set(err, US_ENOMEM, "manifest of '%s': out of memory (%zu bytes)", dir,
                          len);
    ultrashard__store_manifest__pack(sm, buf);
    uint32_t crc = us_crc32c(0, buf, len);
    buf[len] = CRC_FIELD_TAG;
    for (int b = 0; b < 4; b++)
        buf[len + 1 + b] = (uint8_t)(crc >> (8 * b));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, US_MANIFEST_FILE);
    us_durable_file f;
    int rc = us_durable_open(&f, path, true, err);
    if (rc != US_OK)
        goto free_buf;
    if ((rc = us_durable_write(&f, buf, len + 5, err)) != US_OK) {
        us_durable_abort(&f);
        goto free_buf;
    }
    rc = us_durable_commit(&f, err);
free_buf:
    free(buf);
    return rc;
}

int us_manifest_write(const char *dir, const us_manifest *m, us_err *err)
{
    manifest_msg msg = { .sm = ULTRASHARD__STORE_MANIFEST__INIT };
    int rc = msg_alloc(&msg, m, dir, err);
    if (rc != US_OK)
        goto free_msg;
    msg.sm.version = 1;
    msg.sm.format_version = m->format_version;
    msg.sm.shard_count = m->shard_count;
    msg.sm.n_tables = m->n_tables;
    msg.sm.tables = msg.tptr;
    msg.sm.created_by = (char *)"ultrashard";
    msg.sm.store_id_hi = m->store_id_hi;
    msg.sm.store_id_lo = m->store_id_lo;
    for (size_t i = 0; i < m->n_tables; i++) {
        fill_table_msg(&msg.tms[i], m, i);
        msg.tptr[i] = &msg.tms[i];
        if (!m->tables[i].synthetic && (rc = fill_shard_files(&msg, m, i, dir, err)) != US_OK)
            goto free_msg;
    }
    rc = write_packed(dir, &msg.sm, err);
free_msg:
    msg_free(&msg);
    return rc;
}

/* ----------------------------------------------------------------- read */

static int check_table(const char *path, const us_manifest *m, size_t i,
                       const Ultrashard__TableManifest *tm, us_err *err)
{
    const us_table_layout *t = &m->tables[i];
    if (tm->shard_count != m->shard_count)
        return us_err_set(err, US_ECORRUPT, "%s: table '%s': shard_count %u differs from the "
                          "store's %u", path, t->name, tm->shard_count, m->shard_count);
    if (tm->block_slot_bytes != t->block_slot_bytes ||
        tm->scales_offset_bytes != t->scales_offset_bytes)
        return us_err_set(err, US_ECORRUPT, "%s: table '%s': block slot %llu/%llu bytes, "
                          "expected %llu/%llu for this layout", path, t->name,
                          (unsigned long long)tm->block_slot_bytes,
                          (unsigned long long)tm->scales_offset_bytes,
                          (unsigned long long)t->block_slot_bytes,
                          (unsigned long long)t->scales_offset_bytes);
    if (tm->placement != ULTRASHARD__PLACEMENT__PLACEMENT_ROW)
        return us_err_set(err, US_EUNSUPP, "%s: table '%s': only row placement is supported",
                          path, t->name);
    if (t->synthetic)
        return US_OK;
    if (tm->n_shard_files != m->shard_count)
        return us_err_set(err, US_ECORRUPT, "%s: table '%s': %zu shard files for %u shards",
                          path, t->name, tm->n_shard_files, m->shard_count);
    /* every block listed exactly once, in its placement's shard, ascending */
    size_t *cursor = calloc(m->shard_count, sizeof *cursor);
    const Ultrashard__ShardFile **byshard = calloc(m->shard_count, sizeof *byshard);
    if (cursor == NULL || byshard == NULL) {
        free(cursor);
        free(byshard);
        return us_err_set(err, US_ENOMEM, "%s: out of memory", path);
    }
    int rc = US_OK;
    for (size_t k = 0; k < tm->n_shard_files && rc == US_OK; k++) {
        const Ultrashard__ShardFile *sf = tm->shard_files[k];
        char want[64];
        if (sf->shard >= m->shard_count || byshard[sf->shard] != NULL) {
            rc = us_err_set(err, US_ECORRUPT, "%s: table '%s': shard file entry %zu has bad "
                            "or repeated shard %u", path, t->name, k, sf->shard);
            break;
        }
        byshard[sf->shard] = sf;
        us_shard_file_name(want, sizeof want, t->table_id, sf->shard);
        if (strcmp(sf->file_name, want) != 0)
            rc = us_err_set(err, US_ECORRUPT, "%s: table '%s': shard %u file is '%s', "
                            "expected '%s'", path, t->name, sf->shard, sf->file_name, want);
        else if (sf->file_bytes != us_layout_file_bytes(t, sf->n_block_ids))
            rc = us_err_set(err, US_ECORRUPT, "%s: table '%s': shard %u: file_bytes %llu for "
                            "%zu blocks", path, t->name, sf->shard,
                            (unsigned long long)sf->file_bytes, sf->n_block_ids);
    }
    for (uint64_t b = 0; b < t->n_blocks && rc == US_OK; b++) {
        uint32_t s = (uint32_t)us_placement_shard(t->table_id, b, t->placement_seed,
                                                  (int)m->shard_count);
        const Ultrashard__ShardFile *sf = byshard[s];
        if (cursor[s] >= sf->n_block_ids || sf->block_ids[cursor[s]] != b)
            rc = us_err_set(err, US_ECORRUPT, "%s: table '%s': block %llu is not listed where "
                            "placement puts it (shard %u)", path, t->name,
                            (unsigned long long)b, s);
        cursor[s]++;
    }
    for (uint32_t s = 0; s < m->shard_count && rc == US_OK; s++)
        if (cursor[s] != byshard[s]->n_block_ids)
            rc = us_err_set(err, US_ECORRUPT, "%s: table '%s': shard %u lists %zu blocks, "
                            "placement gives %zu", path, t->name, s,
                            byshard[s]->n_block_ids, cursor[s]);
    free(cursor);
    free(byshard);
    return rc;
}

/* Reads DIR/manifest.pb whole into *buf and checks its trailing CRC field. */
static int read_checked(const char *path, uint8_t **buf_out, uint64_t *size_out, us_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return us_err_set(err, e == ENOENT ? US_ENOTFOUND : US_EIO, "open '%s': %s%s", path,
                          strerror(e), e == ENOENT ? " (not a store directory?)" : "");
    }
    struct stat st;
    int rc = US_OK;
    uint8_t *buf = NULL;
    uint64_t size = 0;
    if (fstat(fd, &st) != 0) {
        rc = us_err_set(err, US_EIO, "stat '%s': %s", path, strerror(errno));
        goto close_fd;
    }
    size = (uint64_t)st.st_size;
    if (size < 5 || size > MANIFEST_MAX_BYTES) {
        rc = us_err_set(err, US_ECORRUPT, "'%s': %llu bytes is not a valid manifest "
                        "(truncated?)", path, (unsigned long long)size);
        goto close_fd;
    }
    if ((buf = malloc(size)) == NULL) {
        rc = us_err_set(err, US_ENOMEM, "'%s': out of memory", path);
        goto close_fd;
    }
    if ((rc = us_pread_all(fd, buf, size, 0, path, err)) != US_OK)
        goto close_fd;
    uint32_t want = (uint32_t)buf[size - 4] | (uint32_t)buf[size - 3] << 8 |
                    (uint32_t)buf[size - 2] << 16 | (uint32_t)buf[size - 1] << 24;
    if (buf[size - 5] != CRC_FIELD_TAG || us_crc32c(0, buf, size - 5) != want)
        rc = us_err_set(err, US_ECORRUPT, "'%s': checksum mismatch: the manifest is "
                        "corrupt or truncated", path);
close_fd:
    close(fd);
    if (rc != US_OK) {
        free(buf);
        return rc;
    }
    *buf_out = buf;
    *size_out = size;
    return US_OK;
}

/* Table i of the message into m: fields checked as a layout, unique id and
 * name, shard files and CRCs checked (check_table). */
static int load_table(const char *path, const Ultrashard__TableManifest *tm, us_manifest *m,
                      size_t i, us_err *err)
{
    us_table_layout t = {
        .table_id = tm->table_id, .name = tm->name, .rows = tm->rows, .dim = tm->dim,
        .dtype = (us_dtype)tm->dtype, .block_bits = tm->block_bits,
        .placement_seed = tm->placement_seed, .synthetic = tm->synthetic,
        .synthetic_seed = tm->synthetic_seed,
    };
    if (tm->version > 1)
        return us_err_set(err, US_EVERSION, "'%s': table '%s': version %u is newer than 1",
                          path, tm->name, tm->version);
    if (us_table_layout_init(&t, err) != US_OK) {   /* bad fields: corrupt file */
        us_err_prefix(err, "'%s'", path);
        return us_err_set_code(err, US_ECORRUPT);
    }
    for (size_t j = 0; j < i; j++)
        if (m->tables[j].table_id == t.table_id || strcmp(m->tables[j].name, t.name) == 0)
            return us_err_set(err, US_ECORRUPT, "'%s': table '%s' (id %u) appears twice",
                              path, t.name, t.table_id);
    /* Checked before us_manifest_set_table allocates n_blocks CRCs: rows and
     * block_bits come from the file, and a few corrupt bytes must not ask for
     * terabytes (found by tests/fuzz/fuzz_manifest.c). */
    if (!t.synthetic && tm->n_block_crc32c != t.n_blocks)
        return us_err_set(err, US_ECORRUPT, "%s: table '%s': %zu block checksums for %llu "
                          "blocks", path, t.name, tm->n_block_crc32c,
                          (unsigned long long)t.n_blocks);
    int rc = us_manifest_set_table(m, i, &t, err);
    if (rc == US_OK)
        rc = check_table(path, m, i, tm, err);
    if (rc == US_OK && !t.synthetic)
        memcpy(m->block_crc[i], tm->block_crc32c, t.n_blocks * sizeof(uint32_t));
    return rc;
}

int us_manifest_read(const char *dir, us_manifest *m, us_err *err)
{
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, US_MANIFEST_FILE);
    uint8_t *buf = NULL;
    uint64_t size = 0;
    int rc = read_checked(path, &buf, &size, err);
    if (rc != US_OK)
        return rc;
    Ultrashard__StoreManifest *sm = ultrashard__store_manifest__unpack(NULL, size, buf);
    free(buf);
    if (sm == NULL)
        return us_err_set(err, US_ECORRUPT, "'%s': not a valid StoreManifest protobuf", path);
    if (sm->version > 1 || (sm->format_version != US_STORE_FORMAT_VERSION &&
                            sm->format_version != US_STORE_FORMAT_NO_HEADER)) {
        rc = us_err_set(err, US_EVERSION, "'%s': manifest version %u / store format %u; "
                        "this build reads version 1 / formats %d and %d", path, sm->version,
                        sm->format_version, US_STORE_FORMAT_NO_HEADER, US_STORE_FORMAT_VERSION);
        goto free_message;
    }
    if (sm->shard_count == 0 || sm->shard_count > US_MAX_SHARDS) {
        rc = us_err_set(err, US_ECORRUPT, "'%s': shard_count %u outside [1, %d]", path,
                        sm->shard_count, US_MAX_SHARDS);
        goto free_message;
    }
    if ((rc = us_manifest_alloc(m, sm->shard_count, sm->n_tables, err)) != US_OK)
        goto free_message;
    m->format_version = sm->format_version;    /* before set_table stamps the layouts */
    m->store_id_hi = sm->store_id_hi;
    m->store_id_lo = sm->store_id_lo;
    for (size_t i = 0; i < sm->n_tables && rc == US_OK; i++)
        rc = load_table(path, sm->tables[i], m, i, err);
    if (rc != US_OK)
        us_manifest_free(m);
free_message:
    ultrashard__store_manifest__free_unpacked(sm, NULL);
    return rc;
}
