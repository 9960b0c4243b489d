"""Blocking Python client of `ultrashard serve` (one TCP connection to one
coordinator; one request in flight; not thread-safe: one Client per thread).

Faults: when the connection breaks, times out, or the server answers BUSY or
SHUTTING_DOWN, the client reconnects with exponential backoff
(backoff_initial doubling up to backoff_max seconds, at most max_retries
retries per call) and resends the request if it is idempotent (Lookup,
Memory, Stats, Health) or a Generate of which nothing was streamed yet. A
Generate that already streamed tokens is not resent: ConnectionLost is
raised (its tokens so far were already yielded). A refused token
(UNAUTHENTICATED) is never retried. This is what lets a client ride over a
supervised restart of the service (deploy/supervise.sh).
"""

import os
import socket
import stat
import time

import numpy as np

from . import protocol

# Statuses after which the request was not run: safe to retry after backoff.
_RETRY_STATUSES = ("STATUS_BUSY", "STATUS_SHUTTING_DOWN")


class ServerError(RuntimeError):
    """The server answered a non-OK status (status: its name, e.g. "STATUS_BUSY")."""

    def __init__(self, status, message, request_id):
        RuntimeError.__init__(self, "server: %s: %s" % (status, message))
        self.status, self.server_message, self.request_id = status, message, request_id


class ConnectionLost(ConnectionError):
    """The connection broke and the request could not be retried (out of
    retries, or a Generate that had already streamed tokens)."""


class _Retry(Exception):
    """Internal: the request was not run, or may be rerun: try again."""


def read_token(path):
    """Returns a token file's bytes without trailing newlines; refuses a file
    that is not a regular file of mode 0600 owned by this user (as serve and
    the C client do)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("%s: token file is not a regular file" % path)
    if st.st_mode & 0o077:
        raise ValueError("%s: token file has mode %o; chmod 600 it"
                         % (path, stat.S_IMODE(st.st_mode)))
    if st.st_uid != os.getuid():
        raise ValueError("%s: token file is owned by uid %d, not this user" % (path, st.st_uid))
    with open(path, "rb") as f:
        token = f.read().rstrip(b"\r\n")
    if not 1 <= len(token) <= 4096:
        raise ValueError("%s: token must be 1..4096 bytes, has %d" % (path, len(token)))
    return token


class Generation:
    """Iterator over a Generate's streamed pieces, each (tokens, text):
    a list of token ids and their bytes. After the last piece, finish
    ("eos" | "length" | "nan_logits"), prompt_tokens and generated_tokens
    are set. tokens / text accumulate everything received."""

    def __init__(self, pieces):
        self._pieces = pieces
        self.tokens, self.text = [], b""
        self.finish, self.prompt_tokens, self.generated_tokens = None, None, None

    def __iter__(self):
        for tokens, text, done in self._pieces:
            self.tokens.extend(tokens)
            self.text += text
            if done is not None:
                self.finish, self.prompt_tokens, self.generated_tokens = done
            if tokens or text:
                yield tokens, text

    def result(self):
        """Consumes the stream; returns (tokens, text)."""
        for _ in self:
            pass
        return self.tokens, self.text


class Client:
    """Client(host, port, token=None, timeout=30.0, ...): see the module comment.

    token: bytes/str or None (no Auth); timeout: seconds a call waits for each
    answer (for Generate: for each streamed piece); connect_timeout: seconds
    per connection attempt."""

    def __init__(self, host, port, token=None, timeout=30.0, connect_timeout=5.0,
                 max_retries=8, backoff_initial=0.05, backoff_max=2.0,
                 max_frame_bytes=protocol.DEFAULT_MAX_FRAME_BYTES):
        self.host, self.port = host, int(port)
        self.token = token.encode() if isinstance(token, str) else token
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.max_retries = max_retries
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.max_frame_bytes = max_frame_bytes
        self.pb = protocol.messages()
        self._sock = None
        self._next_id = 1
        self.reconnects = 0          # connections opened after the first

    # -- connection -----------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def connect(self):
        """Opens the connection (and authenticates) if it is not open.
        Raises OSError when the server cannot be reached, ServerError when
        the token is refused."""
        if self._sock is not None:
            return
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        self._sock = sock
        if self._next_id > 1:
            self.reconnects += 1
        if self.token is not None:
            req = self._request()
            req.auth.token = self.token
            try:
                self._send(req)
                self._check(self._recv(req.request_id), req.request_id)
            except BaseException:
                self.close()
                raise

    def _request(self):
        req = self.pb.Request(version=protocol.PROTOCOL_VERSION, request_id=self._next_id)
        self._next_id += 1
        return req

    def _send(self, req):
        self._sock.sendall(protocol.pack_frame(req, self.max_frame_bytes))

    def _recv(self, request_id):
        """Next answer to request_id; a connection-level error (id 0) too."""
        while True:
            resp = self.pb.Response.FromString(protocol.recv_frame(self._sock,
                                                                   self.max_frame_bytes))
            if resp.request_id in (request_id, 0):
                return resp
            # an answer to an earlier request this client gave up on: drop it

    def _check(self, resp, request_id):
        status = self.pb.status_name.get(resp.status, str(resp.status))
        if resp.status == self.pb.Status["STATUS_OK"]:
            return resp
        if status in _RETRY_STATUSES:
            self.close()      # a draining server closes; a busy one may stay open
            raise _Retry(ServerError(status, resp.message, request_id))
        if resp.request_id == 0:
            self.close()      # connection-level error: the server closes it
        raise ServerError(status, resp.message, request_id)

    def _backoff(self, attempt):
        time.sleep(min(self.backoff_max, self.backoff_initial * (2 ** attempt)))

    # -- calls ------------------------------------------------------------
    def _call(self, fill):
        """Sends a request built by fill(req) and returns its OK answer,
        retrying over reconnects (the request kinds routed here are all
        idempotent)."""
        last = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._backoff(attempt - 1)
            try:
                self.connect()
                req = self._request()
                fill(req)
                self._send(req)
                return self._check(self._recv(req.request_id), req.request_id)
            except _Retry as e:
                last = e.args[0]
            except (OSError, ConnectionError) as e:   # socket.timeout is an OSError
                self.close()
                last = e
        raise ConnectionLost("%s:%d: no answer after %d retries: %s"
                             % (self.host, self.port, self.max_retries, last))

    def health(self):
        """Returns the HealthResponse (serving, state)."""
        return self._call(lambda r: r.health.SetInParent()).health

    def stats(self):
        """Returns the StatsResponse (tables, limits, counters)."""
        return self._call(lambda r: r.stats.SetInParent()).stats

    def lookup(self, table, rows, weights, groups=None, n_groups=None):
        """Weighted row sums of `table`: rows and weights are [T][k]
        (array-likes; rows < the table's rows); groups None, or [T][k] group
        ids < n_groups (default max(groups) + 1). Returns float32 [T][dim],
        or [T][n_groups][dim] when groups are given."""
        rows = np.ascontiguousarray(rows, dtype=np.uint64)
        weights = np.ascontiguousarray(weights, dtype=np.float32)
        if rows.ndim != 2 or weights.shape != rows.shape:
            raise ValueError("rows and weights must be [T][k] of one shape, got %s and %s"
                             % (rows.shape, weights.shape))
        n_tokens, k = rows.shape
        if groups is not None:
            groups = np.ascontiguousarray(groups, dtype=np.uint8)
            if groups.shape != rows.shape:
                raise ValueError("groups must be [T][k] like rows, got %s" % (groups.shape,))
            if n_groups is None:
                n_groups = int(groups.max()) + 1 if groups.size else 1

        def fill(req):
            q = req.lookup
            q.table, q.n_tokens, q.k = table, n_tokens, k
            q.rows.extend(rows.ravel().tolist())
            q.weights.extend(weights.ravel().tolist())
            if groups is not None:
                q.groups, q.n_groups = groups.tobytes(), n_groups

        resp = self._call(fill).lookup
        out = np.array(resp.sums, dtype=np.float32)
        if groups is None:
            return out.reshape(resp.n_tokens, resp.dim)
        return out.reshape(resp.n_tokens, resp.n_groups, resp.dim)

    def memory(self, table, queries):
        """The whole remote memory layer of `table` for queries h [T][d_model]
        (float32). Returns (rows uint64 [T][k], weights float32 [T][k],
        out float32 [T][d_model])."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2:
            raise ValueError("queries must be [T][d_model], got shape %s" % (queries.shape,))

        def fill(req):
            q = req.memory
            q.table, q.n_tokens, q.dim = table, queries.shape[0], queries.shape[1]
            q.queries.extend(queries.ravel().tolist())

        m = self._call(fill).memory
        rows = np.array(m.rows, dtype=np.uint64).reshape(m.n_tokens, m.k)
        weights = np.array(m.weights, dtype=np.float32).reshape(m.n_tokens, m.k)
        out = np.array(m.output, dtype=np.float32).reshape(m.n_tokens, m.dim)
        return rows, weights, out

    def generate(self, prompt, max_tokens=0, temperature=0.0, seed=0, session=None,
                 top_p=0.0, id=""):
        """Streams the continuation of prompt (bytes or str) as `ultrashard
        infer` decodes it: returns a Generation iterator of (tokens, text)
        pieces. temperature 0 = greedy; otherwise top-p sampling seeded by
        (seed, id) as infer seeds a line by (--seed, its id), so a sampled
        answer reproduces infer's. session: not in protocol version 1
        (ValueError when given)."""
        if session is not None:
            raise ValueError("generate: sessions are not part of the serve protocol "
                             "version 1 (GenerateRequest has no session field)")
        prompt = prompt.encode() if isinstance(prompt, str) else bytes(prompt)

        def fill(req):
            g = req.generate
            g.prompt, g.max_tokens = prompt, max_tokens
            g.temperature, g.top_p = temperature, top_p
            g.seed, g.id = seed, id

        return Generation(self._generate_pieces(fill))

    def _generate_pieces(self, fill):
        """Yields (tokens, text, done) per answer; done is None or
        (finish, prompt_tokens, generated_tokens) on the last one."""
        streamed, last = False, None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._backoff(attempt - 1)
            try:
                self.connect()
                req = self._request()
                fill(req)
                self._send(req)
                while True:
                    g = self._check(self._recv(req.request_id), req.request_id).generate
                    done = (g.finish, g.prompt_tokens, g.generated_tokens) if g.done else None
                    if g.tokens:
                        streamed = True
                    yield list(g.tokens), bytes(g.text), done
                    if g.done:
                        return
            except _Retry as e:
                last = e.args[0]
                if streamed:
                    break
            except (OSError, ConnectionError) as e:
                self.close()
                last = e
                if streamed:
                    break
        raise ConnectionLost("%s:%d: generate lost: %s%s"
                             % (self.host, self.port, last,
                                " (tokens were already streamed: not resent)" if streamed
                                else " (out of retries)"))
