#!/usr/bin/python3
"""Independent reference of shard/synthetic.h: value(seed, table, row, col).

Usage: synthetic.py SEED TABLE ROW0 NROWS DIM OUT.npy  -> writes an f32 array
       synthetic.py --golden                            -> prints golden k values
       synthetic.py --check FILE.npy SEED TABLE ROW0    -> exit 0 iff FILE holds
                    exactly those rows (bit for bit), else 1 with the first bad row
Pure integer arithmetic (Python ints masked to 64 bits), vectorised with numpy
uint64 (which wraps modulo 2^64 like C).
"""
import sys
import numpy as np

G = 0x9e3779b97f4a7c15


def fin(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
    return z ^ (z >> np.uint64(31))


def row_hash(seed, table, rows):
    with np.errstate(over="ignore"):
        h = fin(np.uint64(seed) ^ np.uint64(0x5ca1ab1e0ddba11))
        h = fin(h + np.uint64(table + 1) * np.uint64(G))
        return fin(h ^ np.asarray(rows, dtype=np.uint64))


def values(seed, table, row0, nrows, dim):
    rows = np.arange(row0, row0 + nrows, dtype=np.uint64)
    h = row_hash(seed, table, rows)[:, None]
    cols = np.arange(1, dim + 1, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        x = fin(h + cols * np.uint64(G))
    k = (x >> np.uint64(40)).astype(np.float64)
    return (k * 2.0 ** -23 - 1.0).astype(np.float32)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        got = np.load(sys.argv[2])
        seed, table, row0 = (int(a, 0) for a in sys.argv[3:6])
        want = values(seed, table, row0, got.shape[0], got.shape[1])
        bad = np.nonzero((got.view(np.uint32) != want.view(np.uint32)).any(axis=1))[0]
        if bad.size:
            r = int(bad[0])
            sys.exit("row %d differs: got %r want %r" % (row0 + r, got[r, :4], want[r, :4]))
        print("ok %d rows x %d match" % got.shape)
    elif sys.argv[1:] == ["--golden"]:
        for s, t, r, c in [(0, 0, 0, 0), (1, 0, 0, 0), (42, 3, 123456789, 17),
                           (0xdeadbeef, 7, 99999999999, 255)]:
            v = values(s, t, r, 1, c + 1)[0, c]
            print(int(round((float(v) + 1.0) * 2 ** 23)))
    else:
        seed, table, row0, nrows, dim = (int(a, 0) for a in sys.argv[1:6])
        np.save(sys.argv[6], values(seed, table, row0, nrows, dim))
