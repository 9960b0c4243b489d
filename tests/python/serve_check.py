"""The Python client against a running `ultrashard serve` (driven by
tests/integration/serve_python.sh): greedy Generate equals `ultrashard infer`
for the same prompts, Lookup equals the numpy gather of the table the store
was built from, Memory answers a well-formed selection (and RemoteMemory the
same output), Stats names the table, and a wrong token is refused.

usage: serve_check.py PORT TOKEN_FILE PROMPTS.jsonl INFER_OUT.jsonl VALUES.npy
"""

import json
import sys

import numpy as np

from ultrashard_client import Client, ServerError, read_token


def check_generate(c, prompts_path, ref_path):
    prompts = [json.loads(l) for l in open(prompts_path)]
    refs = [json.loads(l) for l in open(ref_path)]
    assert len(prompts) == len(refs) > 0
    for p, r in zip(prompts, refs):
        gen = c.generate(p["prompt"], max_tokens=p["max_tokens"], temperature=0.0)
        pieces = list(gen)
        assert gen.tokens == r["tokens"], (p["id"], gen.tokens, r["tokens"])
        assert gen.finish == r["finish"], (gen.finish, r["finish"])
        assert gen.prompt_tokens == r["prompt_tokens"], (gen.prompt_tokens, r["prompt_tokens"])
        print("generate %s: %d tokens in %d pieces, equal to infer" % (p["id"], len(gen.tokens),
                                                                       len(pieces)))


def check_lookup(c, values_path):
    table = np.load(values_path)
    stats = c.stats()
    names = [t.name for t in stats.tables]
    assert "table_0" in names, names
    rng = np.random.default_rng(7)
    for n_tokens, k in ((1, 1), (5, 4), (32, 8)):
        rows = rng.integers(0, table.shape[0], size=(n_tokens, k))
        w = rng.random((n_tokens, k), dtype=np.float32)
        got = c.lookup("table_0", rows, w)
        want = np.einsum("tk,tkd->td", w.astype(np.float64), table[rows].astype(np.float64))
        err = np.abs(got - want).max() / np.abs(want).max()
        assert got.shape == want.shape and err < 1e-5, (got.shape, want.shape, err)
        print("lookup %d x %d: max rel err %.2g vs numpy gather" % (n_tokens, k, err))
    try:
        c.lookup("table_0", [[table.shape[0]]], [[1.0]])
        raise AssertionError("row out of range was accepted")
    except ServerError as e:
        assert e.status == "STATUS_OUT_OF_RANGE", e
        print("row %d refused: %s" % (table.shape[0], e.status))
    return stats


def check_memory(c, stats):
    d = stats.d_model
    h = np.random.default_rng(3).standard_normal((6, d)).astype(np.float32)
    rows, weights, out = c.memory("table_0", h)
    assert out.shape == (6, d) and rows.shape == weights.shape and rows.shape[0] == 6
    assert np.isfinite(out).all() and (rows < stats.tables[0].rows).all()
    import torch
    from ultrashard_client import RemoteMemory
    layer = RemoteMemory(c, "table_0")
    t = layer(torch.from_numpy(h).reshape(2, 3, d))
    assert tuple(t.shape) == (2, 3, d) and not t.requires_grad
    assert np.array_equal(t.reshape(6, d).numpy(), out)
    print("memory: %d pairs per token, RemoteMemory gives the same output" % rows.shape[1])


def main(port, token_file, prompts, ref, values):
    token = read_token(token_file)
    with Client("127.0.0.1", int(port), token=token, timeout=30) as c:
        check_generate(c, prompts, ref)
        stats = check_lookup(c, values)
        check_memory(c, stats)
    with Client("127.0.0.1", int(port), token=token + b"x", timeout=10) as bad:
        try:
            bad.health()
            raise AssertionError("a wrong token was accepted")
        except ServerError as e:
            assert e.status == "STATUS_UNAUTHENTICATED", e
            print("wrong token refused: %s" % e)
    print("serve_check ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
