/* cmd_serve.h — `ultrashard serve`: the long-running service (serve/serve.h). */
#ifndef US_CMD_SERVE_H
#define US_CMD_SERVE_H

#define US_CMD_SERVE_USAGE \
    "usage: mpirun -n N ultrashard serve --model DIR --store STORE --listen HOST:PORT\n" \
    "                        [--coordinators C] [--token-file F] [--metrics HOST:PORT]\n" \
    "                        [--max-batch-tokens N] [--batch-size N] [--batch-window-us U]\n" \
    "                        [--max-connections N] [--max-frame-bytes N]\n" \
    "                        [--idle-timeout-s S] [--frame-timeout-ms M] [--max-queue N]\n" \
    "                        [--max-request-tokens N] [--max-tokens N]\n" \
    "                        [--transport mpi|fabric] [--lookup-mode auto|push|pull]\n" \
    "       ultrashard serve --model DIR [--store STORE] --listen HOST:PORT ...  (one process)\n" \
    "\n" \
    "Serves the model and its memory tables to clients (`ultrashard client`, the\n" \
    "C client proto/us_client.h, the Python client) over TCP: length-prefixed\n" \
    "protobuf frames (proto/ultrashard.proto, Request/Response). Ranks are as in\n" \
    "`infer`: coordinators 0..C-1, the rest shards; coordinator c listens on PORT+c\n" \
    "(metrics on MPORT+c). Requests from all connections are batched: Lookup work\n" \
    "into lookup rounds, Generate into continuous-batching decode steps (greedy\n" \
    "Generate = `infer`'s tokens). Prints one {\"event\":\"serve_listening\",..} line\n" \
    "per coordinator when ready. SIGTERM/SIGINT: stop accepting, answer everything\n" \
    "accepted, stop the shards, exit 0.\n" \
    "\n" \
    "  --model DIR              model directory (init-model)\n" \
    "  --store STORE            memory tables from a store (required with N > 1 ranks)\n" \
    "  --listen HOST:PORT       client address; non-loopback needs --token-file\n" \
    "  --token-file F           clients must send this token first (file mode 0600,\n" \
    "                           owned by you)\n" \
    "  --metrics HOST:PORT      Prometheus text on GET /metrics\n" \
    "  --coordinators C         coordinator ranks, 1 <= C < N (default 1)\n" \
    "  --max-batch-tokens N     tokens per lookup round / decode step (default 256);\n" \
    "                           also the largest Lookup/Memory request in tokens\n" \
    "  --batch-size N           Generate requests decoded at once (default 16)\n" \
    "  --batch-window-us U      wait up to U us to coalesce lookups (default 500)\n" \
    "  --max-connections N      more connections are answered BUSY (default 64)\n" \
    "  --max-frame-bytes N      larger frames are refused TOO_LARGE (default 16 MiB)\n" \
    "  --idle-timeout-s S       close connections idle this long (default 300)\n" \
    "  --frame-timeout-ms M     a frame must complete within M ms (default 10000)\n" \
    "  --max-queue N            queued requests per coordinator; more: BUSY (default 1024)\n" \
    "  --max-request-tokens N   Generate prompt + max_tokens limit (default 1048576)\n" \
    "  --max-tokens N           Generate max_tokens when the request gives 0 (default 64)\n" \
    "  --transport T            mpirun jobs: mpi (default) or fabric\n" \
    "  --lookup-mode M          mpirun jobs: auto (default), push, pull\n"

/* Returns: the exit status (0 after a clean drain, 1 failure, 2 usage). */
int us_cmd_serve(int argc, char **argv);

#endif
