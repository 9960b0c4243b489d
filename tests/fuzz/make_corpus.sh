#!/usr/bin/env bash
# Regenerates the checked-in seed corpora tests/fuzz/corpus/NAME/ (run once,
# commit the result; `make fuzz` never writes there). Needs build/ultrashard
# (for a real config.json and real manifests) and /usr/bin/python3 with numpy
# (npy files; everything else is written byte by byte below). Each corpus
# holds a few small valid inputs plus near-valid ones that stop at a check.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${US_BIN:-build/ultrashard}
C=tests/fuzz/corpus
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
rm -rf "$C"; mkdir -p "$C"/{npy,safetensors,manifest,session,journal,wire,serve,model_config,prompts,shard_header,client_frame}

# config.json: the tiny preset as init-model writes it, small, and near misses.
"$BIN" init-model --preset tiny --out "$tmp/tiny" >/dev/null
"$BIN" init-model --preset small --out "$tmp/small" >/dev/null
cp "$tmp/tiny/config.json" "$C/model_config/tiny.json"
cp "$tmp/small/config.json" "$C/model_config/small.json"
sed 's/"version": *1/"version": 2/' "$tmp/tiny/config.json" >"$C/model_config/version2.json"
head -c 200 "$tmp/tiny/config.json" >"$C/model_config/truncated.json"

# manifests: real stores, with the trailing 5-byte CRC field cut off (the
# harness appends the right one).
/usr/bin/python3 - "$tmp" <<'PY'
import sys, numpy as np
d = sys.argv[1]
np.save(f"{d}/a.npy", (np.arange(40 * 6, dtype=np.float32) / 7).reshape(40, 6))
PY
"$BIN" import --quiet --out "$tmp/s1" --table a="$tmp/a.npy" --shards 3 --block-bits 2 >/dev/null
"$BIN" import --quiet --out "$tmp/s2" --table a="$tmp/a.npy" --dtype int8 --shards 2 \
  --block-bits 3 --synthetic syn=100000x16 >/dev/null
for s in s1 s2; do
  f="$tmp/$s/manifest.pb"; head -c $(( $(stat -c %s "$f") - 5 )) "$f" >"$C/manifest/$s.pb"
done
{ printf '!'; head -c 40 "$tmp/s1/manifest.pb"; } >"$C/manifest/raw-bad-crc"   # '!': written as is

/usr/bin/python3 - "$C" <<'PY'
import io, json, struct, sys, numpy as np
C = sys.argv[1]

def put(path, data):
    with open(f"{C}/{path}", "wb") as f:
        f.write(data)

# ---- npy: every accepted dtype and version, then refused variants
def npy(arr, **kw):
    b = io.BytesIO(); np.lib.format.write_array(b, arr, **kw); return b.getvalue()
put("npy/f32_2d.npy", npy(np.arange(12, dtype=np.float32).reshape(4, 3)))
put("npy/f16_1d.npy", npy(np.arange(5, dtype=np.float16)))
put("npy/i8_0d.npy", npy(np.array(-3, dtype=np.int8)))
put("npy/bf16_v2.npy", npy(np.zeros((2, 2), dtype="V2"), version=(2, 0)))
put("npy/empty.npy", npy(np.zeros((0, 4), dtype=np.float32)))
put("npy/fortran.npy", npy(np.asfortranarray(np.ones((2, 3), dtype=np.float32))))
put("npy/f64.npy", npy(np.ones(3)))
put("npy/truncated.npy", npy(np.ones((3, 3), dtype=np.float32))[:-5])

# ---- safetensors
def st(tensors, meta=None, pad=0, extra=b""):
    hdr, data = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr).encode() + b" " * pad
    return struct.pack("<Q", len(h)) + h + data + extra
f32 = np.arange(6, dtype=np.float32).tobytes()
put("safetensors/two.safetensors", st([("w", "F32", [2, 3], f32), ("q", "I8", [4], b"\x01\xff\x02\x80")],
                                      meta={"format": "pt"}, pad=3))
put("safetensors/bf16.safetensors", st([("b", "BF16", [2], b"\x80\x3f\x00\x40"), ("h", "F16", [], b"\x00\x3c")]))
put("safetensors/f64.safetensors", st([("d", "F64", [1], b"\0" * 8)]))
put("safetensors/trailing.safetensors", st([("w", "F32", [6], f32)], extra=b"xx"))
put("safetensors/hole.safetensors", struct.pack("<Q", 60) +
    b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}     ' + b"\0" * 8)

# ---- session states (protobuf SessionState, hand-encoded; id fuzz-session)
def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n: return out
def field(num, wt, payload):
    return varint(num << 3 | wt) + payload
def ld(num, b): return field(num, 2, varint(len(b)) + b)
def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
def session(layers, heads, dk, dv, extra=b"", sid=b"fuzz-session", version=1, gen=3):
    mem = np.linspace(-1, 1, layers * heads * dk * dv, dtype=np.float32).tobytes()
    norm = np.full(layers * heads * dk, 0.5, dtype=np.float32).tobytes()
    c = crc32c(extra, crc32c(norm, crc32c(mem)))
    m = field(1, 0, varint(version)) + ld(2, sid) + field(3, 0, varint(gen)) + field(4, 0, varint(40))
    m += b"".join(field(n, 0, varint(v)) for n, v in ((5, layers), (6, heads), (7, dk), (8, dv)))
    m += ld(9, mem) + ld(10, norm) + field(11, 5, struct.pack("<I", c))
    return m + (ld(12, extra) if extra else b"")
put("session/small.pb", session(1, 2, 2, 3))
put("session/extra.pb", session(2, 1, 2, 2, extra=b"\x01\x02\x03tokens"))
put("session/other_id.pb", session(1, 1, 1, 1, sid=b"someone-else"))
put("session/version2.pb", session(1, 1, 2, 2, version=2))
put("session/shape_mismatch.pb", session(1, 1, 2, 2)[:-12])

# ---- journal bodies (the harness writes the header for ids a, b, c)
put("journal/two_done.jsonl", b'{"id": "b", "text": "x"}\n{"id": "a", "text": "yy"}\n')
put("journal/torn.jsonl", b'{"id": "c", "text": "z"}\n{"id": "a", "te')
put("journal/unknown_id.jsonl", b'{"id": "q"}\n')
put("journal/duplicate.jsonl", b'{"id": "a"}\n{"id": "a"}\n{"id": "c"}\n')
put("journal/other_header", b'!{"ultrashard_journal":1,"fingerprint":"0000000000000000","sequences":3}\n')

# ---- wire requests and responses
REQ, RESP = 0x31525355, 0x31415355
def req(mode, flags, table, tokens, rows, pairs=(), groups=1, batch=9):
    # pairs: list of (token, ref, weight, group)
    with_g = flags & 1
    body = b"".join(struct.pack("<Q", r) for r in rows)
    body += b"".join(struct.pack("<I", p[0]) for p in pairs)
    body += b"".join(struct.pack("<I", p[1]) for p in pairs)
    body += b"".join(struct.pack("<f", p[2]) for p in pairs)
    if with_g:
        body += bytes(p[3] for p in pairs)
    total = 48 + len(body); total += (-total) % 8
    h = struct.pack("<IHBBIIIIIIQQ", REQ, 1, mode, flags, table, tokens, len(rows), len(pairs),
                    groups, 0, batch, total)
    return (h + body).ljust(total, b"\0")
def resp(mode, flags, status, table, tokens, groups, dim, rows, payload, batch=9):
    total = 48 + len(payload)
    return struct.pack("<IHBBiIIIIIQQ", RESP, 1, mode, flags, status, table, tokens, groups,
                       dim, rows, batch, total) + payload
push = req(1, 1, 4, 3, [1, 17, 2], [(0, 0, .5, 0), (0, 1, -2., 1), (2, 0, 1.5, 1), (2, 2, .25, 0)], groups=2)
rows = req(2, 0, 4, 0, [0, 3, 5])
nop = req(0, 2, 4, 0, [])
for name, r in (("push", push), ("rows", rows), ("nop_stop", nop)):
    put(f"wire/req_{name}", b"\0" + r)
put("wire/req_bad_order", b"\0" + req(1, 0, 4, 2, [3], [(1, 0, 1., 0), (0, 0, 1., 0)]))
def answer(asked, elem_scales, dim, response):
    return b"\1" + asked[:48] + bytes([elem_scales]) + struct.pack("<I", dim) + response
put("wire/resp_push", answer(push, 2, 2, resp(1, 0, 0, 4, 3, 2, 2, 0, b"\0" * (3 * 2 * 2 * 4))))
put("wire/resp_rows_int8", answer(rows, 4, 3, resp(2, 4, 0, 4, 0, 0, 3, 3, b"\0" * (12 + 9 + 3))))
put("wire/resp_error", answer(push, 2, 2, resp(1, 0, -5, 4, 0, 0, 0, 0, b"row 17 out of range")))
put("wire/resp_nop", answer(nop, 2, 0, resp(0, 0, 0, 4, 0, 0, 0, 0, b"")))

# ---- serve: byte 0 picks the f32 (even; odd blocks of 8 rows absent) or
# int8 (odd; 61 rows) table 4 server
put("serve/f32_push", b"\0" + req(1, 1, 4, 2, [1, 17, 2], [(0, 0, .5, 0), (0, 1, -2., 1), (1, 2, 3., 1)], groups=2))
put("serve/f32_rows", b"\0" + req(2, 0, 4, 0, [0, 7, 16]))
put("serve/f32_absent_block", b"\0" + req(2, 0, 4, 0, [8]))
put("serve/i8_push", b"\1" + req(1, 0, 4, 1, [60, 3], [(0, 0, 1., 0), (0, 1, -1., 0)]))
put("serve/i8_rows", b"\1" + req(2, 0, 4, 0, [59, 60]))
put("serve/i8_row_range", b"\1" + req(2, 0, 4, 0, [61]))
put("serve/wrong_table", b"\1" + req(0, 0, 5, 0, []))

# ---- prompt files
put("prompts/basic.jsonl", b'{"id": "a", "prompt": "hello", "max_tokens": 4}\n\n'
    b'{"id": "b", "prompt": "caf\\u00e9 \\ud83d\\ude00", "session": "s-1"}\n')
put("prompts/utf8.jsonl", '{"id": "\u00e9", "prompt": "\u65e5\u672c"}\n'.encode())
put("prompts/dup_id.jsonl", b'{"id": "a", "prompt": ""}\n{"id": "a", "prompt": "x"}\n')
put("prompts/bad_utf8.jsonl", b'{"id": "a", "prompt": "\xc3\x28"}\n')
put("prompts/bad_session.jsonl", b'{"id": "a", "prompt": "x", "session": ".hidden"}\n')

# ---- shard-file identity headers (shard/manifest.h layout), the identity
# fuzz_shard_header.c expects, and near misses; only the first 64 bytes (the
# harness zero-pads to the 4096-byte slot).
def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF
def shard_header(table=0, shard=1, count=3, blocks=5, slot=4096, fmt=2,
                 hi=0x0123456789abcdef, lo=0xfedcba9876543210, magic=b"USSHARD\0"):
    h = magic + struct.pack("<IIQQIIQQ", fmt, table, hi, lo, shard, count, blocks, slot)
    return h + struct.pack("<I", crc32c(h)) + b"\0" * 4
put("shard_header/good", shard_header())
put("shard_header/swapped_shard", shard_header(shard=2))
put("shard_header/other_store", shard_header(lo=1))
put("shard_header/format1", shard_header(fmt=1))
put("shard_header/bad_crc", shard_header()[:56] + b"\0\0\0\0")
put("shard_header/foreign", b"\x93NUMPY\x01\x00" + b"\0" * 56)

# ---- client frames (byte 0: the harness's chunk size), ultrashard.proto Request
def frame(b): return struct.pack("<I", len(b)) + b
def request(rid, num, body): return field(1, 0, varint(1)) + field(2, 0, varint(rid)) + ld(num, body)
auth = request(1, 10, ld(1, b"token"))
rows = b"".join(varint(r) for r in (1, 2, 3, 4))
wts = struct.pack("<4f", 0.5, -1.0, 2.0, 0.0)
lookup = ld(1, b"table_0") + field(2, 0, varint(2)) + field(3, 0, varint(2)) + ld(4, rows) + ld(5, wts)
put("client_frame/auth_lookup", b"\x03" + frame(auth) + frame(request(2, 11, lookup)))
put("client_frame/lookup_groups", b"\x00" + frame(request(3, 11, lookup + ld(6, b"\0\1\1\0") + field(7, 0, varint(2)))))
put("client_frame/generate", b"\x07" + frame(request(4, 13, ld(1, b"hello") + field(2, 0, varint(8)) + ld(6, b"p01"))))
mem = ld(1, b"table_0") + field(2, 0, varint(1)) + field(3, 0, varint(2)) + ld(4, struct.pack("<2f", 1, 2))
put("client_frame/memory_stats_health", b"\x0f" + frame(request(5, 12, mem)) + frame(request(6, 14, b"")) + frame(request(7, 15, b"")))
put("client_frame/garbage", b"\x01" + frame(b"\xff" * 6))
put("client_frame/oversize", b"\x02" + struct.pack("<I", 0x7fffffff) + b"\x08")
put("client_frame/response_lookup", b"\x05" + frame(field(1, 0, varint(1)) + field(2, 0, varint(2)) + ld(11, field(1, 0, varint(1)) + field(2, 0, varint(1)) + field(3, 0, varint(2)) + ld(4, struct.pack("<2f", 1, 2)))))
PY
du -sb "$C"/* | sed 's#^#corpus: #'
du -sb "$C" | awk '{print "corpus total: " $1 " bytes"}'
