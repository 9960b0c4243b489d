/* placement.c — jump consistent hash over a SplitMix64 key (see placement.h). */
#include "proto/placement.h"

#include "kernels/hash.h"

uint64_t us_mix64(uint32_t table_id, uint64_t block_id, uint64_t seed)
{
    uint64_t h = us_splitmix64_mix(seed + US_SPLITMIX64_GAMMA);
    h = us_splitmix64_mix(h ^ ((uint64_t)table_id * US_SPLITMIX64_GAMMA));
    return us_splitmix64_mix(h ^ block_id);
}

int32_t us_jump_hash(uint64_t key, int32_t n_buckets)
{
    int64_t b = -1, j = 0;
    while (j < n_buckets) {
        b = j;
        key = key * 2862933555777941757ull + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1ll << 31) / (double)((key >> 33) + 1)));
    }
    return (int32_t)b;
}

int us_placement_shard(uint32_t table_id, uint64_t block_id, uint64_t seed, int n_shards)
{
    return us_jump_hash(us_mix64(table_id, block_id, seed), n_shards);
}

int us_placement_owners(uint32_t table_id, uint64_t block_id, uint64_t seed,
                        int n_shards, int replicas, int *owners)
{
    if (replicas > n_shards)
        replicas = n_shards;
    int n = 0;
    /* Replica i hashes with a derived seed; skip duplicates so owners are distinct. */
    for (uint64_t attempt = 0; n < replicas; attempt++) {
        int s = us_placement_shard(table_id, block_id, seed + attempt * 0x632be59bd9b4e019ull,
                                   n_shards);
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= owners[i] == s;
        if (!dup)
            owners[n++] = s;
        if (attempt > 64ull * (uint64_t)n_shards) {   /* fall back to a scan: always terminates */
            for (int c = 0; c < n_shards && n < replicas; c++) {
                dup = 0;
                for (int i = 0; i < n; i++)
                    dup |= owners[i] == c;
                if (!dup)
                    owners[n++] = c;
            }
        }
    }
    return n;
}
