/* cmd_eval.h — `ultrashard eval`: bits per byte of a model on a text file. */
#ifndef US_CMD_EVAL_H
#define US_CMD_EVAL_H

#define US_CMD_EVAL_USAGE \
    "usage: ultrashard eval --model DIR --text FILE [--store STORE] [--json]\n" \
    "                       [--batch-tokens N] [--quiet]\n" \
    "       mpirun -n N ultrashard eval ... --store STORE [--transport mpi|fabric]\n" \
    "                       [--lookup-mode auto|push|pull]\n" \
    "\n" \
    "Bits per byte of the model on FILE: the file's n bytes are one sequence that\n" \
    "starts with BOS; the model is fed BOS and the bytes but the last, and each\n" \
    "byte b_i is scored by p(b_i | BOS, b_0..b_i-1), a softmax over the whole\n" \
    "259-token vocabulary (bytes, BOS, EOS, PAD). Exactly n predictions are\n" \
    "counted (BOS is not predicted, no EOS is scored):\n" \
    "  bits_per_byte = sum_i -log2 p(b_i | ...) / n,  nll_nats = sum_i -ln p(..)\n" \
    "The file streams through the model in chunks of --batch-tokens tokens\n" \
    "(segment-wise Infini-attention): memory does not grow with the file.\n" \
    "Progress goes to stderr at most every 5 seconds. Memory values come from\n" \
    "DIR/values, or with --store from a store; under mpirun with N > 1 ranks,\n" \
    "rank 0 evaluates and ranks 1..N-1 serve the store (same result as one\n" \
    "process, up to float rounding of the gathered sums).\n" \
    "\n" \
    "  --model DIR         model directory (init-model)\n" \
    "  --text FILE         the text to score (any bytes; must not be empty)\n" \
    "  --store STORE       memory tables from a store (init-model --store)\n" \
    "  --json              print one JSON line: {\"event\":\"eval_done\",\n" \
    "                      \"bits_per_byte\":..,\"bytes\":..,\"nll_nats\":..,\n" \
    "                      \"tokens_per_s\":..,\"seconds\":..}\n" \
    "  --batch-tokens N    tokens per forward step (default 256)\n" \
    "  --quiet             no progress lines on stderr\n" \
    "  --transport T       mpirun jobs: mpi (default) or fabric\n" \
    "  --lookup-mode M     mpirun jobs: auto (default), push, pull\n"

/* Returns: the exit status (coordinator/cli/cli.h: 0 success, 1 failure with
 * its message printed, 2 usage error). */
int us_cmd_eval(int argc, char **argv);

#endif
