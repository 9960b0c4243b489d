#!/usr/bin/python3
"""demo_print.py PROMPTS.jsonl OUT.jsonl — each prompt and its continuation
as plain text, for `make demo`.

The continuation is rebuilt from the generated token ids (not the "text"
field, where a lone non-UTF-8 byte shows as U+FFFD) and cut at its first
empty line (the training text puts one after each fortune). Printable ASCII
and newlines are kept, a tab becomes a space, any other byte (and BOS/EOS)
is dropped, so the output is readable whatever the model samples.
"""
import json
import sys


def readable(tokens):
    out = bytearray()
    for t in tokens:
        if t == 9:
            out += b" "
        elif t == 10 or 32 <= t <= 126:
            out.append(t)
    text = out.decode("ascii")
    cut = text.find("\n\n")
    return text if cut < 0 else text[:cut]


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        prompts = {r["id"]: r["prompt"] for r in map(json.loads, f)}
    with open(sys.argv[2]) as f:
        for r in map(json.loads, f):
            print(f"--- {r['id']} ({len(r['tokens'])} tokens, finish: {r['finish']})")
            print(prompts[r["id"]] + readable(r["tokens"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
