/* test_crc32c.c — CRC-32C known vectors; table and SSE4.2 paths agree everywhere. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shard/crc32c.h"

static void test_known_vectors(void **state)
{
    (void)state;
    /* RFC 3720 (iSCSI) appendix B.4 and the standard check value */
    uint8_t buf[48];
    assert_int_equal(us_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(us_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(us_crc32c_sw(0, "", 0), 0);
    memset(buf, 0, 32);
    assert_int_equal(us_crc32c_sw(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, 32);
    assert_int_equal(us_crc32c_sw(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(us_crc32c_sw(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(us_crc32c_sw(0, buf, 32), 0x113FDB5Cu);
    if (us_crc32c_hw_available()) {
        assert_int_equal(us_crc32c_hw(0, "123456789", 9), 0xE3069283u);
        assert_int_equal(us_crc32c_hw(0, buf, 32), 0x113FDB5Cu);
    }
}

static void test_hw_equals_sw_and_chaining(void **state)
{
    (void)state;
    enum { N = 70000 };
    uint8_t *b = malloc(N + 16);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < N + 16; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        b[i] = (uint8_t)x;
    }
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len < 300; len += 1 + len / 8) {
            uint32_t s = us_crc32c_sw(0, b + off, len);
            assert_int_equal(us_crc32c(0, b + off, len), s);
            if (us_crc32c_hw_available())
                assert_int_equal(us_crc32c_hw(0, b + off, len), s);
            /* chaining: crc(A|B) == crc(crc(A), B) for every split */
            size_t cut = len / 3;
            assert_int_equal(us_crc32c(us_crc32c(0, b + off, cut), b + off + cut, len - cut), s);
        }
    /* the interleaved paths: lengths around 3 x 8192 and 3 x 256 (stream
     * sizes), odd offsets, and random lengths up to N */
    static const size_t edges[] = { 767, 768, 769, 775, 776, 24575, 24576, 24577, 24583,
                                    24576 + 768, 49152 + 767, 49152 + 776 };
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
        for (size_t off = 0; off < 9; off += 4) {
            uint32_t want = us_crc32c_sw(0x12345678u, b + off, edges[e]);
            assert_int_equal(us_crc32c(0x12345678u, b + off, edges[e]), want);
        }
    for (int i = 0; i < 200; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t off = x % 16, len = (size_t)(x >> 8) % (N - 16);
        assert_int_equal(us_crc32c(0, b + off, len), us_crc32c_sw(0, b + off, len));
    }
    uint32_t s = us_crc32c_sw(0, b + 3, N);
    assert_int_equal(us_crc32c(0, b + 3, N), s);
    /* a single bit flip anywhere changes the value */
    b[3 + N / 2] ^= 0x10;
    assert_int_not_equal(us_crc32c(0, b + 3, N), s);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_hw_equals_sw_and_chaining),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
