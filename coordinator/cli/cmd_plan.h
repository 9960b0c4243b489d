/* cmd_plan.h — `ultrashard plan`: the capacity planner's command line (model: plan.h). */
#ifndef US_CMD_PLAN_H
#define US_CMD_PLAN_H

#define US_CMD_PLAN_USAGE \
    "usage: ultrashard plan [--values N] [--dim D] [--dtype f32|bf16|f16|int8]\n" \
    "                       [--layers L] [--heads H] [--k K] [--groups G] [--batch B]\n" \
    "                       [--target-tokens-per-s T] [--node-memory BYTES]\n" \
    "                       [--nic-gbit GBIT] [--nic-latency-us US] [--cores C]\n" \
    "                       [--ranks-per-node R] [--headroom F] [--max-util F]\n" \
    "                       [--msg-us US] [--row-ns NS] [--gather-gbs GB/S]\n" \
    "                       [--unique-fraction F] [--block-bits N] [--shards S] [--json]\n" \
    "\n" \
    "Capacity planner: for row and column placement, each with push-down and\n" \
    "pull gathers, prints the shards needed for the target tokens/s (the\n" \
    "largest of the memory, compute and network limits), memory per rank,\n" \
    "network bytes and messages per token at the coordinator, and the expected\n" \
    "latency of one lookup round and of one token (L rounds). The model and\n" \
    "its assumptions are documented in coordinator/plan/plan.h.\n" \
    "\n" \
    "  --values N              rows over all memory tables (default 1e9; 1..1e13)\n" \
    "  --dim D, --dtype T      row shape (default 512, bf16)\n" \
    "  --layers L              memory layers a token looks up in (default 2)\n" \
    "  --heads H, --k K        pairs per token and layer = H*K (default 2, 32)\n" \
    "  --groups G              IVE groups summed separately (default 1)\n" \
    "  --batch B               tokens per lookup round (default 64)\n" \
    "  --target-tokens-per-s T decoded tokens/s the cluster must sustain (default 1e4)\n" \
    "  --node-memory BYTES     per node; suffix K/M/G/T = KiB..TiB (default 256G)\n" \
    "  --nic-gbit GBIT         NIC bandwidth in Gbit/s (default 25)\n" \
    "  --nic-latency-us US     one-way latency (default 5)\n" \
    "  --cores C               cores per node (default 32)\n" \
    "  --ranks-per-node R      shard ranks per node (default 1)\n" \
    "  --headroom F            fraction of node memory kept free (default 0.25)\n" \
    "  --max-util F            planned utilisation of cores and NIC (default 0.7)\n" \
    "  --msg-us US             software cost per message (default 2)\n" \
    "  --row-ns NS             fixed cost of one random row read (default 80)\n" \
    "  --gather-gbs GB/S       streaming gather bandwidth per core (default 7.5)\n" \
    "  --unique-fraction F     distinct rows / pairs in a round (default 1)\n" \
    "  --block-bits N          rows per block = 2^N (default 12)\n" \
    "  --shards S              predict at S shards instead of planning\n" \
    "  --json                  one JSON line per placement and mode\n"

/* Returns: the exit status (coordinator/cli/cli.h: 0 success, 1 failure with
 * its message printed, 2 usage error). */
int us_cmd_plan(int argc, char **argv);

#endif
