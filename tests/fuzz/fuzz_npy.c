/* fuzz_npy.c — libFuzzer harness: .npy files through us_tf_open (shard/tensorfile.h). */
#include "tests/fuzz/tensorfile_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tensorfile("input.npy", data, size);
    return 0;
}
