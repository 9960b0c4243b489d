"""python3 -m ultrashard_client --connect HOST:PORT [--token-file F] [--timeout S]
     (health | stats | generate --prompt TEXT [--max-tokens N] [--temperature T]
      [--top-p P] [--seed N] | lookup --table NAME --rows R.npy --weights W.npy
      [--groups G.npy] --out OUT.npy)

One call, printed as one JSON line (generate: the whole text and tokens);
exit 1 with the error on stderr. Used by tests/integration/serve_python.sh.
"""

import argparse
import json
import sys

import numpy as np
from google.protobuf import json_format

from .client import Client, read_token


def _parse(argv):
    p = argparse.ArgumentParser(prog="python3 -m ultrashard_client")
    p.add_argument("--connect", required=True, help="HOST:PORT of a coordinator")
    p.add_argument("--token-file")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--retries", type=int, default=5)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("health")
    sub.add_parser("stats")
    g = sub.add_parser("generate")
    g.add_argument("--prompt", required=True)
    g.add_argument("--max-tokens", type=int, default=0)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--top-p", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--id", default="")
    l = sub.add_parser("lookup")
    l.add_argument("--table", required=True)
    l.add_argument("--rows", required=True)
    l.add_argument("--weights", required=True)
    l.add_argument("--groups")
    l.add_argument("--out", required=True)
    return p.parse_args(argv)


def _run(a, c):
    if a.cmd in ("health", "stats"):
        msg = getattr(c, a.cmd)()
        return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                         including_default_value_fields=True)
    if a.cmd == "generate":
        gen = c.generate(a.prompt, max_tokens=a.max_tokens, temperature=a.temperature,
                         top_p=a.top_p, seed=a.seed, id=a.id)
        tokens, text = gen.result()
        return {"text": text.decode("utf-8", errors="replace"), "tokens": tokens,
                "prompt_tokens": gen.prompt_tokens, "finish": gen.finish}
    groups = np.load(a.groups) if a.groups else None
    out = c.lookup(a.table, np.load(a.rows), np.load(a.weights), groups=groups)
    np.save(a.out, out)
    return {"out": a.out, "shape": list(out.shape)}


def main(argv=None):
    a = _parse(argv)
    host, _, port = a.connect.rpartition(":")
    try:
        token = read_token(a.token_file) if a.token_file else None
        with Client(host.strip("[]"), int(port), token=token, timeout=a.timeout,
                    max_retries=a.retries) as c:
            print(json.dumps(_run(a, c)))
    except Exception as e:     # one line naming the failure, not a traceback
        print("ultrashard_client: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
