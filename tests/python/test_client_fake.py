"""The Python client (python/ultrashard_client) against a scripted fake
server on loopback: framing, auth, answers decoded into the right shapes,
and the retry rules (idempotent requests resent after a dropped connection
or BUSY; a Generate resent only when nothing of it was streamed; a refused
token never retried). Run by tests/integration/serve_python_fake.sh."""

import os
import socket
import subprocess
import sys
import threading
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from ultrashard_client import Client, ConnectionLost, ServerError, protocol  # noqa: E402

pb = protocol.messages()
OK, BUSY, UNAUTH = (pb.Status[n] for n in ("STATUS_OK", "STATUS_BUSY", "STATUS_UNAUTHENTICATED"))


class FakeServer:
    """Accepts connections; handler(conn_index, request, reply) per request,
    where reply(resp) sends a Response and returning "close" drops the
    connection. Records every request (kind, id) per connection."""

    def __init__(self, handler):
        self.handler, self.seen, self.connections = handler, [], 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections - 1),
                             daemon=True).start()

    def _serve(self, conn, index):
        def reply(resp):
            resp.version = 1
            conn.sendall(protocol.pack_frame(resp))
        with conn:
            while True:
                try:
                    req = pb.Request.FromString(protocol.recv_frame(conn))
                except (ConnectionError, OSError):
                    return
                self.seen.append((index, req.WhichOneof("body"), req.request_id))
                if self.handler(index, req, reply) == "close":
                    return

    def close(self):
        self.sock.close()


def lookup_answer(req, table):
    q = req.lookup
    rows = np.array(q.rows, dtype=np.int64).reshape(q.n_tokens, q.k)
    w = np.array(q.weights, dtype=np.float32).reshape(q.n_tokens, q.k)
    sums = np.einsum("tk,tkd->td", w, table[rows])
    r = pb.Response(request_id=req.request_id, status=OK)
    r.lookup.n_tokens, r.lookup.n_groups, r.lookup.dim = q.n_tokens, 1, table.shape[1]
    r.lookup.sums.extend(sums.ravel().tolist())
    return r


class ClientTest(unittest.TestCase):
    table = np.arange(40, dtype=np.float32).reshape(10, 4) / 7

    def client(self, server, **kw):
        kw.setdefault("backoff_initial", 0.01)
        kw.setdefault("timeout", 5)
        return Client("127.0.0.1", server.port, **kw)

    def test_lookup_shapes_and_values(self):
        s = FakeServer(lambda i, req, reply: reply(lookup_answer(req, self.table)))
        rows = np.array([[1, 2, 3], [9, 0, 0]])
        w = np.array([[0.5, 0.25, 0.25], [1, 0, 0]], dtype=np.float32)
        with self.client(s) as c:
            out = c.lookup("t", rows, w)
        self.assertEqual(out.shape, (2, 4))
        np.testing.assert_allclose(out, np.einsum("tk,tkd->td", w, self.table[rows]), rtol=1e-6)
        self.assertEqual(s.seen, [(0, "lookup", 1)])

    def test_idempotent_retried_after_drop_and_busy(self):
        def handler(i, req, reply):
            if i == 0:
                return "close"                          # dropped: no answer
            if i == 1:
                reply(pb.Response(request_id=req.request_id, status=BUSY, message="queue full"))
                return None
            reply(lookup_answer(req, self.table))
        s = FakeServer(handler)
        with self.client(s) as c:
            out = c.lookup("t", [[4]], [[2.0]])
            self.assertEqual(c.reconnects, 2)
        np.testing.assert_allclose(out, 2 * self.table[[4]], rtol=1e-6)
        self.assertEqual([k for _, k, _ in s.seen], ["lookup"] * 3)

    def test_out_of_retries(self):
        s = FakeServer(lambda i, req, reply: "close")
        with self.client(s, max_retries=2) as c:
            with self.assertRaises(ConnectionLost):
                c.health()
        self.assertEqual(s.connections, 3)

    def test_generate_streamed_not_resent(self):
        def handler(i, req, reply):
            r = pb.Response(request_id=req.request_id, status=OK)
            r.generate.tokens.extend([104, 105])
            r.generate.text = b"hi"
            reply(r)
            return "close"                              # dies mid-stream
        s = FakeServer(handler)
        with self.client(s) as c:
            got = []
            with self.assertRaises(ConnectionLost) as e:
                for tokens, text in c.generate("x", max_tokens=5):
                    got.append((tokens, text))
        self.assertEqual(got, [([104, 105], b"hi")])
        self.assertIn("already streamed", str(e.exception))
        self.assertEqual(s.connections, 1)

    def test_generate_resent_when_nothing_streamed(self):
        def handler(i, req, reply):
            if i == 0:
                return "close"
            for piece, done in ((b"ab", False), (b"c", True)):
                r = pb.Response(request_id=req.request_id, status=OK)
                r.generate.tokens.extend(list(piece))
                r.generate.text, r.generate.done = piece, done
                if done:
                    r.generate.finish, r.generate.prompt_tokens = "length", 2
                    r.generate.generated_tokens = 3
                reply(r)
        s = FakeServer(handler)
        with self.client(s) as c:
            gen = c.generate(b"p", max_tokens=3)
            tokens, text = gen.result()
        self.assertEqual((tokens, text, gen.finish, gen.generated_tokens),
                         ([97, 98, 99], b"abc", "length", 3))
        self.assertEqual([k for _, k, _ in s.seen], ["generate", "generate"])

    def test_auth_first_and_refusal_not_retried(self):
        def handler(i, req, reply):
            if req.WhichOneof("body") == "auth":
                if req.auth.token == b"good":
                    reply(pb.Response(request_id=req.request_id, status=OK))
                else:
                    reply(pb.Response(request_id=0, status=UNAUTH, message="wrong token"))
                    return "close"
                return None
            reply(pb.Response(request_id=req.request_id, status=OK))
        s = FakeServer(handler)
        with self.client(s, token="good") as c:
            c.health()
        self.assertEqual([k for _, k, _ in s.seen], ["auth", "health"])
        with self.client(s, token=b"bad") as c:
            with self.assertRaises(ServerError) as e:
                c.health()
        self.assertEqual(e.exception.status, "STATUS_UNAUTHENTICATED")
        self.assertEqual(s.connections, 2)

    def test_remote_memory_module(self):
        try:
            import torch
        except ImportError:
            self.skipTest("torch not importable")
        from ultrashard_client import RemoteMemory

        def handler(i, req, reply):
            q = req.memory
            h = np.array(q.queries, dtype=np.float32).reshape(q.n_tokens, q.dim)
            r = pb.Response(request_id=req.request_id, status=OK)
            m = r.memory
            m.n_tokens, m.dim, m.k = q.n_tokens, q.dim, 1
            m.rows.extend(range(q.n_tokens))
            m.weights.extend([1.0] * q.n_tokens)
            m.groups = bytes(q.n_tokens)
            m.output.extend((2 * h + 1).ravel().tolist())
            reply(r)
        s = FakeServer(handler)
        layer = RemoteMemory(self.client(s), "table_0")
        h = torch.randn(2, 3, 8, requires_grad=True)
        out = layer(h)
        self.assertEqual(tuple(out.shape), (2, 3, 8))
        self.assertFalse(out.requires_grad)        # no gradient to the server
        torch.testing.assert_close(out, (2 * h + 1).detach())
        self.assertEqual(layer.last_rows.shape, (6, 1))

    def test_schema_missing_is_named(self):
        env = dict(os.environ, US_PROTO="/nonexistent/ultrashard.proto")
        env.pop("US_PROTO_DESC", None)
        code = "import ultrashard_client as u; u.messages()"
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, cwd=os.path.join(os.path.dirname(__file__), "..",
                                                         "..", "python"))
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("/nonexistent/ultrashard.proto: no such file", run.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
