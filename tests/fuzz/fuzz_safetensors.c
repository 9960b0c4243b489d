/* fuzz_safetensors.c — libFuzzer harness: safetensors files through us_tf_open
 * (shard/tensorfile.h). Same checks as fuzz_npy; its own corpus and a JSON
 * dictionary steer it to the JSON header instead of the npy magic. */
#include "tests/fuzz/tensorfile_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tensorfile("input.safetensors", data, size);
    return 0;
}
