/*
 * crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of every stored block, manifest and per-row proof.
 *
 * us_crc32c(crc, buf, n) extends a running CRC: start with crc = 0, pass the
 * result back in for the next piece; the pre/post inversion is internal, so
 * us_crc32c(0, "123456789", 9) == 0xE3069283 (the standard check value) and
 * crc(A then B) == us_crc32c(us_crc32c(0, A), B).
 *
 * Two implementations with identical results: a portable slice-by-8 table
 * version (the reference) and an SSE4.2 crc32 instruction version chosen at
 * run time when the CPU has it. Tests compare them on random lengths and
 * alignments.
 */
#ifndef US_CRC32C_H
#define US_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Dispatching entry point: hardware when available, else table.
 * Returns: the updated CRC-32C; cannot fail.
 */
uint32_t us_crc32c(uint32_t crc, const void *buf, size_t n);

/* Portable reference.
 * Returns: the updated CRC-32C (table-driven); cannot fail.
 */
uint32_t us_crc32c_sw(uint32_t crc, const void *buf, size_t n);

/* SSE4.2 version; only call when us_crc32c_hw_available().
 * Returns: the updated CRC-32C (SSE4.2); call only when us_crc32c_hw_available().
 */
uint32_t us_crc32c_hw(uint32_t crc, const void *buf, size_t n);
/* Returns: true when the CPU has the SSE4.2 crc32 instruction. */
bool us_crc32c_hw_available(void);

#endif
