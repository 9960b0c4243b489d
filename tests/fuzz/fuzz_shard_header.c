/*
 * fuzz_shard_header.c — libFuzzer harness: the identity header of a shard
 * file (first 4096-byte slot; shard/manifest.h us_shard_header_check), which
 * every store open reads before serving a block.
 *
 * The input is the start of a file (zero padded or cut to the slot size) and
 * is checked against one fixed expected identity, twice: as it is, and with
 * its header CRC recomputed, so mutated fields reach the checks behind the
 * checksum. A header that passes must encode to exactly the expected bytes.
 * Seeds (tests/fuzz/make_corpus.sh) carry that identity: store id
 * 0123456789abcdef fedcba9876543210, table 0, shard 1 of 3, 5 blocks of 4096.
 */
#include "shard/crc32c.h"
#include "shard/manifest.h"
#include "tests/fuzz/fuzz_util.h"

#define HEADER_CRC_AT 56   /* CRC-32C of bytes [0, 56) is stored at [56, 60) */

static const us_shard_header want = {
    .format_version = 2, .table_id = 0, .shard = 1, .shard_count = 3,
    .store_id_hi = 0x0123456789abcdefull, .store_id_lo = 0xfedcba9876543210ull,
    .n_blocks = 5, .block_slot_bytes = 4096,
};

static void check(const uint8_t *buf)
{
    us_err err = {0};
    int rc = us_shard_header_check(buf, &want, "fuzz/table-0.shard-1.bin", &err);
    fuzz_check_err(rc, &err);
    if (rc != US_OK) {
        FUZZ_CHECK(rc == US_ECORRUPT, "code %d (%s)", rc, err.msg);
        FUZZ_CHECK(strstr(err.msg, "table-0.shard-1.bin") != NULL, "file not named: %s",
                   err.msg);
        return;
    }
    static uint8_t expect[US_SHARD_HEADER_BYTES];
    us_shard_header_encode(expect, &want);
    FUZZ_CHECK(memcmp(expect, buf, HEADER_CRC_AT + 4) == 0,
               "a header other than the expected one passed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[US_SHARD_HEADER_BYTES];
    memset(buf, 0, sizeof buf);
    memcpy(buf, data, size < sizeof buf ? size : sizeof buf);
    check(buf);
    uint32_t crc = us_crc32c(0, buf, HEADER_CRC_AT);
    for (int i = 0; i < 4; i++)
        buf[HEADER_CRC_AT + i] = (uint8_t)(crc >> (8 * i));
    check(buf);
    return 0;
}
