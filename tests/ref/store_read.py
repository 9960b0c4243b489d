#!/usr/bin/python3
"""Independent reader of a store's shard files, and numpy references of the
stored conversions, for tests/integration/store_*.sh.

It re-implements, without any project code: the placement (SplitMix64 mix +
jump hash, proto/placement.h), the shard-file layout (shard/manifest.h:
4096-aligned slots in ascending block order, int8 scales at a 64-aligned
offset), and the conversions f32 -> bf16 (round to nearest even), f16
(numpy), int8 (scale = max|x|/127 in f32, q = rint(x / scale)).

usage: store_read.py DIR TABLE_ID SHARDS SEED BLOCK_BITS DTYPE INPUT.npy
  reconstructs the table from DIR's shard files and compares it, bit for bit,
  with INPUT converted to DTYPE (f32|bf16|f16|int8). Exit 0 and "ok ..." or 1.
"""
import os
import struct
import sys
import numpy as np

M = (1 << 64) - 1
G = 0x9E3779B97F4A7C15


def fin(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def mix(table, block, seed):
    h = fin((seed + G) & M)
    h = fin(h ^ ((table * G) & M))
    return fin(h ^ block)


def jump(key, n):
    b, j = -1, 0
    while j < n:
        b = j
        key = (key * 2862933555777941757 + 1) & M
        j = int(float(b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def align(x, a):
    return (x + a - 1) // a * a


def to_bf16_bits(f32):
    u = f32.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def load_input(path):
    a = np.load(path)
    if a.dtype.kind == "V" and a.dtype.itemsize == 2:      # bf16 saved as raw 2-byte voids
        bits = a.view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(a.shape), "bf16"
    return a.astype(np.float32), {np.dtype("<f4"): "f32", np.dtype("<f2"): "f16"}[a.dtype]


def expected(x, x_dtype, raw, dtype):
    """Stored bytes per row and scales (or None) for input x in `dtype`."""
    if dtype == x_dtype and dtype != "bf16":
        return raw.view(np.uint8).reshape(x.shape[0], -1), None
    if dtype == "f32":
        return x.view(np.uint8).reshape(x.shape[0], -1), None
    if dtype == "bf16":
        bits = raw.view(np.uint16) if x_dtype == "bf16" else to_bf16_bits(x)
        return bits.view(np.uint8).reshape(x.shape[0], -1), None
    if dtype == "f16":
        return x.astype(np.float16).view(np.uint8).reshape(x.shape[0], -1), None
    if dtype == "int8":
        scale = (np.max(np.abs(x), axis=1) / np.float32(127)).astype(np.float32)
        safe = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
        q = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(np.int8)
        q[scale == 0] = 0
        return q.view(np.uint8), scale
    raise SystemExit("unknown dtype " + dtype)


def main():
    d, table, shards, seed, bits, dtype, inp = sys.argv[1:8]
    table, shards, seed, bits = int(table), int(shards), int(seed, 0), int(bits)
    x, x_dtype = load_input(inp)
    raw = np.load(inp)
    rows, dim = x.shape
    esize = {"f32": 4, "bf16": 2, "f16": 2, "int8": 1}[dtype]
    rpb = 1 << bits
    row_bytes = dim * esize
    if dtype == "int8":
        scales_off = align(rpb * row_bytes, 64)
        slot = align(scales_off + rpb * 4, 4096)
    else:
        scales_off = 0
        slot = align(rpb * row_bytes, 4096)
    n_blocks = (rows + rpb - 1) // rpb
    want, want_scales = expected(x, x_dtype, raw, dtype)
    owner = [jump(mix(table, b, seed), shards) for b in range(n_blocks)]
    seen = 0
    for s in range(shards):
        path = os.path.join(d, "table-%d.shard-%d.bin" % (table, s))
        data = np.fromfile(path, dtype=np.uint8)
        mine = [b for b in range(n_blocks) if owner[b] == s]
        # format 2: a 4096-byte identity header, then the slots
        header = 4096
        if data.size != header + len(mine) * slot:
            raise SystemExit("%s: %d bytes, expected %d" % (path, data.size,
                                                            header + len(mine) * slot))
        h = data[:64].tobytes()
        fields = struct.unpack_from("<8sII", h, 0) + struct.unpack_from("<II", h, 32) + \
            struct.unpack_from("<QQ", h, 40)
        magic, fmt, tid, shard, nshards, nblk, slot_bytes = fields
        if (magic, fmt, tid, shard, nshards, nblk, slot_bytes) != \
                (b"USSHARD\0", 2, table, s, shards, len(mine), slot):
            raise SystemExit("%s: header %r does not name table %d shard %d of %d"
                             % (path, fields, table, s, shards))
        for k, b in enumerate(mine):
            r0, r1 = b * rpb, min(rows, (b + 1) * rpb)
            base = header + k * slot
            got = data[base:base + (r1 - r0) * row_bytes].reshape(r1 - r0, row_bytes)
            if not np.array_equal(got, want[r0:r1]):
                bad = r0 + int(np.nonzero((got != want[r0:r1]).any(axis=1))[0][0])
                raise SystemExit("row %d (block %d, %s) differs from the reference" % (bad, b, path))
            if want_scales is not None:
                gs = data[base + scales_off:base + scales_off + 4 * (r1 - r0)].view(np.float32)
                if not np.array_equal(gs.view(np.uint32), want_scales[r0:r1].view(np.uint32)):
                    raise SystemExit("scales of block %d (%s) differ" % (b, path))
            seen += r1 - r0
    if seen != rows:
        raise SystemExit("only %d of %d rows found" % (seen, rows))
    print("ok %d rows x %d %s, %d blocks over %d shards match the numpy reference"
          % (rows, dim, dtype, n_blocks, shards))


if __name__ == "__main__":
    main()
