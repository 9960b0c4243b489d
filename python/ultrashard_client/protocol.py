"""Messages and frames of the `ultrashard serve` client API.

The message classes are built at import time from proto/ultrashard.proto
itself: `protoc-c` (already a build dependency of the C code, Debian
protobuf-c-compiler) writes a FileDescriptorSet of the schema, and
google.protobuf's message factory makes Python classes from it. So there is
no generated Python file that could drift from the schema, and no second
compiler (`protoc`, protobuf-compiler) to install.

Where the schema comes from, first match wins:
  US_PROTO_DESC  a FileDescriptorSet file made beforehand with
                 `protoc-c --descriptor_set_out=FILE -I proto ultrashard.proto`
                 (for a machine without protoc-c or without the source tree);
  US_PROTO       a path to ultrashard.proto;
  the source tree: ../../proto/ultrashard.proto relative to this package.

A frame is a 4-byte little-endian payload length N, then N bytes of one
packed Request (client -> server) or Response (server -> client); read the
"Client API" comment in proto/ultrashard.proto for the rules.
"""

import os
import shutil
import struct
import subprocess
import tempfile

from google.protobuf import descriptor_pb2, message_factory

PROTOCOL_VERSION = 1
FRAME_HEADER = struct.Struct("<I")
DEFAULT_MAX_FRAME_BYTES = 64 << 20

_HERE = os.path.dirname(os.path.abspath(__file__))
_TREE_PROTO = os.path.normpath(os.path.join(_HERE, "..", "..", "proto", "ultrashard.proto"))


class SchemaError(RuntimeError):
    """The schema could not be found or compiled (message says which file)."""


def _descriptor_set_bytes():
    desc = os.environ.get("US_PROTO_DESC")
    if desc:
        with open(desc, "rb") as f:
            return f.read()
    proto = os.environ.get("US_PROTO") or _TREE_PROTO
    if not os.path.isfile(proto):
        raise SchemaError("%s: no such file (set US_PROTO to ultrashard.proto or "
                          "US_PROTO_DESC to a descriptor set)" % proto)
    compiler = shutil.which("protoc-c") or shutil.which("protoc")
    if compiler is None:
        raise SchemaError("neither protoc-c nor protoc on PATH to read %s "
                          "(install protobuf-c-compiler, or set US_PROTO_DESC)" % proto)
    with tempfile.TemporaryDirectory(prefix="us-proto-") as tmp:
        out = os.path.join(tmp, "ultrashard.desc")
        cmd = [compiler, "--descriptor_set_out=" + out,
               "-I" + os.path.dirname(proto), os.path.basename(proto)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise SchemaError("%s failed on %s: %s" % (compiler, proto, run.stderr.strip()))
        with open(out, "rb") as f:
            return f.read()


class _Messages:
    """Namespace of the schema's message classes and enums (pb.Request, ...)."""

    def __init__(self, blob):
        fds = descriptor_pb2.FileDescriptorSet.FromString(blob)
        classes = message_factory.GetMessages(list(fds.file))
        for full_name, cls in classes.items():
            setattr(self, full_name.rsplit(".", 1)[-1], cls)
        fd = classes["ultrashard.Request"].DESCRIPTOR.file
        # enum name -> number and back, for status codes and messages
        self.Status = {v.name: v.number for v in fd.enum_types_by_name["Status"].values}
        self.status_name = {n: k for k, n in self.Status.items()}


_MESSAGES = None


def messages():
    """Returns the message namespace (built once per process)."""
    global _MESSAGES
    if _MESSAGES is None:
        _MESSAGES = _Messages(_descriptor_set_bytes())
    return _MESSAGES


def pack_frame(msg, max_bytes=DEFAULT_MAX_FRAME_BYTES):
    """Returns the frame (header + payload) of one message."""
    payload = msg.SerializeToString()
    if len(payload) > max_bytes:
        raise ValueError("request of %d bytes exceeds the frame limit of %d bytes"
                         % (len(payload), max_bytes))
    return FRAME_HEADER.pack(len(payload)) + payload


def recv_exact(sock, n):
    """Reads exactly n bytes; ConnectionError when the peer closes first."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("connection closed by the server after %d of %d bytes"
                                  % (got, n))
        got += k
    return bytes(buf)


def recv_frame(sock, max_bytes=DEFAULT_MAX_FRAME_BYTES):
    """Reads one frame's payload; checks its length before reading it."""
    (n,) = FRAME_HEADER.unpack(recv_exact(sock, FRAME_HEADER.size))
    if n == 0 or n > max_bytes:
        raise ConnectionError("server frame of %d bytes (limit %d)" % (n, max_bytes))
    return recv_exact(sock, n)
