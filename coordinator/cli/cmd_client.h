/* cmd_client.h — `ultrashard client`: talk to `ultrashard serve` (proto/us_client.h). */
#ifndef US_CMD_CLIENT_H
#define US_CMD_CLIENT_H

#define US_CMD_CLIENT_USAGE \
    "usage: ultrashard client --connect HOST:PORT [--token-file F] [--timeout-ms M] COMMAND\n" \
    "  generate --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P] [--seed S]\n" \
    "           [--id ID]\n" \
    "  lookup --table NAME --rows R.npy --weights W.npy [--groups G.npy] [--n-groups G]\n" \
    "         --out OUT.npy\n" \
    "  memory --table NAME --queries H.npy --out OUT.npy\n" \
    "  stats\n" \
    "  health\n" \
    "\n" \
    "generate prints the text to stdout as it streams, then one JSON line on stderr:\n" \
    "  {\"event\":\"generate_done\",\"tokens\":[..],\"prompt_tokens\":N,\"generated_tokens\":N,\n" \
    "   \"finish\":\"eos\"|\"length\"|\"nan_logits\"}\n" \
    "(greedy at temperature 0: the tokens `infer` gives the same prompt; --id and\n" \
    "--seed name the sampling stream as infer's line id and --seed do).\n" \
    "lookup sends rows [T][k] (.npy int64/uint64/int32) and weights [T][k] (f32),\n" \
    "optionally groups [T][k] (uint8/int8/int64, ids < --n-groups, default max+1),\n" \
    "and writes the weighted sums [T][dim] (or [T][G][dim] with groups) as f32 .npy.\n" \
    "memory runs the whole memory layer of table NAME on the normed input H\n" \
    "[T][d_model] (f32): top-k selection, lookup, IVE projection; writes the\n" \
    "output [T][d_model] (f32) and prints the selection's k and token 0's rows.\n" \
    "stats / health print the server's answer as one JSON line; health exits 1\n" \
    "when the server is draining.\n" \
    "\n" \
    "  --connect HOST:PORT    the server (coordinator c listens on PORT+c)\n" \
    "  --token-file F         the token (mode 0600), sent first\n" \
    "  --timeout-ms M         wait at most M ms for an answer (default: no limit)\n"

/* Returns: the exit status (0 success, 1 failure, 2 usage). */
int us_cmd_client(int argc, char **argv);

#endif
