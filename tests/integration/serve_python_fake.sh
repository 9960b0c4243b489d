#!/usr/bin/env bash
# The Python client (python/ultrashard_client) against a scripted fake server
# on loopback (tests/python/test_client_fake.py): framing, auth, decoded
# answers, RemoteMemory, and the retry rules over dropped connections.
set -euo pipefail
cd "$(dirname "$0")/../.."
/usr/bin/python3 -c 'import google.protobuf, numpy' 2>/dev/null \
  || { echo "skip: /usr/bin/python3 lacks google.protobuf or numpy (python3-protobuf)"; exit 77; }
command -v protoc-c >/dev/null || { echo "skip: protoc-c not on PATH"; exit 77; }
grep -q "^message Request {" proto/ultrashard.proto \
  || { echo "skip: proto/ultrashard.proto has no client API (Request) yet"; exit 77; }
/usr/bin/python3 tests/python/test_client_fake.py
