#!/usr/bin/python3
"""data.py — train / held-out English text from the Debian package `fortunes`.

  data.py [--src /usr/share/games/fortunes] [--out build/data] [--every 20]

Reads every regular file directly in SRC (sorted by name), skipping the
`.dat` index files, the `.u8` symlinks and any `off`/`offensive` folder (only
top-level regular files are read at all). A file is a list of fortunes
separated by lines holding only '%'. Fortunes are numbered in file order
across all files (file by file, top to bottom); fortune i goes to the
held-out split when i % EVERY == EVERY - 1 (every 20th), else to train. Each
fortune is written as its text followed by one empty line: the '%' separator
line becomes a '\n'. Bytes are kept as they are (the package is ASCII but
for a few bytes). Deterministic, no network.

Writes OUT/train.txt, OUT/heldout.txt and OUT/data.json (source files with
their byte and fortune counts, split sizes, sha256 of both splits).
Prints data.json.
"""
import argparse
import hashlib
import json
import os
import sys


def source_files(src):
    names = []
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        # .u8 names are symlinks to the same text; folders (off/) are skipped.
        if name.endswith(".dat") or os.path.islink(path) or not os.path.isfile(path):
            continue
        names.append(name)
    return names


def split_fortunes(data):
    """Fortunes of one file: the text between '%' lines, without empties."""
    out, cur = [], []
    for line in data.split(b"\n"):
        if line == b"%":
            out.append(b"\n".join(cur))
            cur = []
        else:
            cur.append(line)
    out.append(b"\n".join(cur))
    return [f.strip(b"\n") + b"\n" for f in out if f.strip()]


def build(src, every):
    train, held, files = [], [], []
    index = 0
    for name in source_files(src):
        with open(os.path.join(src, name), "rb") as f:
            data = f.read()
        fortunes = split_fortunes(data)
        files.append({"file": name, "bytes": len(data), "fortunes": len(fortunes)})
        for text in fortunes:
            (held if index % every == every - 1 else train).append(text + b"\n")
            index += 1
    return b"".join(train), b"".join(held), files, index


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default="/usr/share/games/fortunes")
    ap.add_argument("--out", default="build/data")
    ap.add_argument("--every", type=int, default=20)
    a = ap.parse_args()
    if not os.path.isdir(a.src):
        print(f"data.py: {a.src}: no such folder (install the Debian package "
              "fortunes: deploy/setup.sh)", file=sys.stderr)
        return 1
    if a.every < 2:
        print(f"data.py: --every {a.every}: must be >= 2", file=sys.stderr)
        return 2
    train, held, files, n = build(a.src, a.every)
    os.makedirs(a.out, exist_ok=True)
    info = {"source": a.src, "files": files, "source_bytes": sum(f["bytes"] for f in files),
            "fortunes": n, "heldout_every": a.every,
            "separator": "each '%' line became '\\n' (one empty line after each fortune)",
            "train_bytes": len(train), "heldout_bytes": len(held),
            "train_sha256": hashlib.sha256(train).hexdigest(),
            "heldout_sha256": hashlib.sha256(held).hexdigest()}
    for name, blob in (("train.txt", train), ("heldout.txt", held)):
        tmp = os.path.join(a.out, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, os.path.join(a.out, name))
    with open(os.path.join(a.out, "data.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
