"""ultrashard.safetensors — the safetensors format, read and written without
third-party packages (only numpy).

Layout (as shard/tensorfile.c reads and writes it): 8-byte little-endian
header length n, n bytes of JSON {name: {"dtype", "shape", "data_offsets":
[begin, end)}, "__metadata__": {...}}, then the data area. The header is
padded with spaces so the data area starts 8-byte aligned; tensors tile the
data area exactly (no holes, no overlap, nothing after the last one), in the
order given. Only F32 is written; F32, F16, F64, I32 and I64 are read (as
stored).
"""
import json
import os
import struct

import numpy as np

_READ_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I32": "<i4", "I64": "<i8"}


class SafetensorsError(ValueError):
    """A file that is not a well-formed safetensors file (message names it)."""


def write(path, tensors, metadata=None):
    """Writes tensors (an ordered mapping name -> array-like, stored as f32)
    to path through a temporary file and a rename (a crash leaves the old
    file or the new one). Returns: nothing. Raises OSError, ValueError."""
    header, arrays, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("tensor name '__metadata__' is reserved")
        a = np.ascontiguousarray(_to_numpy(t), dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in arrays:
            f.write(a.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _to_numpy(t):
    if hasattr(t, "detach"):      # a torch tensor, without importing torch here
        return t.detach().cpu().numpy()
    return np.asarray(t)


def read(path):
    """Reads every tensor of a safetensors file.
    Returns: dict name -> numpy array (file dtype), in file order.
    Raises OSError, SafetensorsError naming the file and tensor."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise SafetensorsError(f"{path}: {len(data)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise SafetensorsError(f"{path}: header length {n} exceeds the file")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except ValueError as e:
        raise SafetensorsError(f"{path}: header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    base, out, spans = 8 + n, {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _READ_DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            b, e = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor '{name}': bad entry {info!r}") from None
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * np.dtype(dtype).itemsize or b < 0 or base + e > len(data):
            raise SafetensorsError(f"{path}: tensor '{name}': data_offsets [{b}, {e}) do not "
                                   f"match shape {shape} {info['dtype']} or the file size")
        out[name] = np.frombuffer(data, dtype, count, base + b).reshape(shape)
        spans.append((b, e, name))
    end = 0
    for b, e, name in sorted(spans):
        if b != end:
            raise SafetensorsError(f"{path}: tensor '{name}': data does not tile the data "
                                   f"area (starts at {b}, previous ends at {end})")
        end = e
    if base + end != len(data):
        raise SafetensorsError(f"{path}: {len(data) - base - end} trailing bytes")
    return out
