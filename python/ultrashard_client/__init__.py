"""Python client of `ultrashard serve` (protocol: proto/ultrashard.proto,
"Client API"). Needs google.protobuf (Debian python3-protobuf), numpy and
protoc-c on PATH (or US_PROTO_DESC, see protocol.py); RemoteMemory also
needs torch and is imported only when asked for.

    from ultrashard_client import Client
    with Client("127.0.0.1", 7700, token=read_token("tok")) as c:
        print(c.health().state)
        sums = c.lookup("table_0", rows, weights)        # numpy [T][dim]
        for tokens, text in c.generate("hello", max_tokens=16):
            print(text.decode(errors="replace"), end="")
"""

from .client import Client, ConnectionLost, Generation, ServerError, read_token
from .protocol import SchemaError, messages

__all__ = ["Client", "ConnectionLost", "Generation", "ServerError", "SchemaError",
           "read_token", "messages", "RemoteMemory"]


def __getattr__(name):
    if name == "RemoteMemory":      # torch is large: import it only on use
        from .torch_memory import RemoteMemory
        return RemoteMemory
    raise AttributeError(name)
