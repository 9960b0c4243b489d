/* cmd_infer.h — `ultrashard infer`: resumable batch inference over a JSONL file. */
#ifndef US_CMD_INFER_H
#define US_CMD_INFER_H

#define US_CMD_INFER_USAGE \
    "usage: ultrashard infer --model DIR --input PROMPTS.jsonl --output OUT.jsonl\n" \
    "                        [--batch N] [--batch-tokens N] [--max-tokens N]\n" \
    "                        [--temperature T] [--top-p P] [--seed N]\n" \
    "                        [--max-prompt-bytes N] [--sessions DIR] [--store STORE]\n" \
    "                        [--step-delay-ms N] [--quiet]\n" \
    "       mpirun -n N ultrashard infer ... --store STORE [--transport mpi|fabric]\n" \
    "                        [--lookup-mode auto|push|pull] [--coordinators C]\n" \
    "\n" \
    "Decodes every prompt of PROMPTS.jsonl (lines {\"id\": .., \"prompt\": .., \"max_tokens\": ..})\n" \
    "with continuous batching and writes one JSON line per sequence to OUT.jsonl,\n" \
    "in input order, flushed and fsync-ed per sequence:\n" \
    "  {\"id\":..,\"text\":..,\"tokens\":[..],\"prompt_tokens\":N,\"finish\":\"eos\"|\"length\"}\n" \
    "OUT.jsonl.journal records finished sequences; rerunning the same command after\n" \
    "a crash or kill skips them and yields the same OUT.jsonl. The whole input is\n" \
    "validated first: a bad line is reported as FILE:LINE and nothing is decoded.\n" \
    "Memory values come from DIR/values, or with --store from a store (opened in\n" \
    "this process, all shards, mmap); table shapes are checked against the model.\n" \
    "Under mpirun with N > 1 ranks, rank 0 decodes and ranks 1..N-1 are shards that\n" \
    "serve the store's memory tables (the store's shard count must be N-1).\n" \
    "With --coordinators C, ranks 0..C-1 each decode every C-th prompt and ranks\n" \
    "C..N-1 are the shards (N-C of them); rank 0 writes OUT.jsonl, the same bytes.\n" \
    "\n" \
    "  --model DIR            model directory (init-model)\n" \
    "  --input FILE           prompts, JSONL\n" \
    "  --output FILE          results, JSONL (FILE.journal next to it)\n" \
    "  --batch N              sequences decoded together (default 16)\n" \
    "  --batch-tokens N       tokens per forward step, >= --batch (default 256)\n" \
    "  --max-tokens N         default per-line max_tokens (default 64)\n" \
    "  --temperature T        0 = greedy (default), else sampling\n" \
    "  --top-p P              nucleus sampling mass in (0, 1] (default 1)\n" \
    "  --seed N               sampling seed (default 0)\n" \
    "  --max-prompt-bytes N   refuse longer prompts (default 1048576)\n" \
    "  --store STORE          memory tables from a store (init-model --store)\n" \
    "  --sessions DIR         durable sessions: a line with \"session\": \"S\" continues\n" \
    "                         session S (Infini-attention memory kept in DIR across\n" \
    "                         jobs; one line per session per job)\n" \
    "  --step-delay-ms N      sleep between steps (tests/demos; default 0)\n" \
    "  --quiet                no progress lines on stderr\n" \
    "  --transport T          mpirun jobs: mpi (default) or fabric (libfabric RDM)\n" \
    "  --lookup-mode M        mpirun jobs: auto (cost model, default), push, pull\n" \
    "  --coordinators C       mpirun jobs: decoding ranks, 1 <= C < N (default 1)\n" \
    "  --scrub-mb-per-s R     mpirun jobs: shard ranks re-check their blocks' CRC-32C\n" \
    "                         while idle, at most R MB/s, and report what they find\n" \
    "                         (default 0: off; blocks are always checked before use)\n"

/* Returns: the exit status (coordinator/cli/cli.h: 0 success, 1 failure with
 * its message printed, 2 usage error). */
int us_cmd_infer(int argc, char **argv);

#endif
