"""ultrashard.model — the PyTorch twin of the C UltraShard transformer.

Same architecture, weight names and shapes as coordinator/model/model.h (see
config.py for the config), written for training on CPU: every step is
vectorised over the batch, the heads and the segments; Python loops run only
over layers, MoE experts and (delta rule only) segments.

  x = tok_emb[tokens]
  per layer l:  x += Wo . InfiniAttention(RMSNorm(x))
                h  = RMSNorm(x)
                dense: x += SwiGLU(h) | moe: x += top-k experts | memory:
                pending[min(l + skip, n - 1)] += MemoryLayer(h)
                x += pending[l]
  logits = RMSNorm(x) . lm_head

Infini-attention, segment by segment (L = segment_len): local causal softmax
attention inside the segment (RoPE on q, k when rope_theta > 0, position =
index within the segment), memory retrieval sigma(q) M / sigma(q) z with the
unrotated q (0 where the denominator is 0), blended by g = sigmoid(beta):
g * A_mem + (1 - g) * A_dot. A full segment then folds its unrotated keys
into M, z (linear or delta rule). The forward walks the whole call the way
C does: the tokens of a call are laid on the segment grid (the unfinished
segment's cached K, V in front), so calling forward in chunks gives the same
logits as one call (up to float rounding).

Memory layer (memlayer.h, score.h): q = h Wq, per head a row and a column
query of k_dim, normalised (query_norm); scores against the sub-keys;
top-`candidates` per side (PKM: the side scores; TDQKR: the rank-1
preselection u.S_row, t.S_col of the summed core, computed as us_pk_rank1);
exact scores on the candidate grid; top-knn; weights = softmax (or raw);
physical row = address // G, group = address % G; pooled per group with
EmbeddingBag and per-sample weights; IVE projection; optional Memory+ output
gate. The selection is not differentiable (indices); the scores of the
selected entries, the keys, the query projection, the core and the values
are. With tucker_cores m > 1, core c's score weights slice c of each value
row (v_dim / m columns).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import config as usconfig


def param_specs(cfg):
    """The parameters of cfg in storage order, as us_model_params() lists them.
    Returns: list of (name, shape tuple, init_std); init_std < 0 means the
    constant -init_std (norm gains)."""
    d, V = cfg["d_model"], cfg["vocab_size"]
    hd = cfg["n_heads"] * cfg["head_dim"]
    s_d = 1.0 / math.sqrt(d)
    out = [("tok_emb", (V, d), 1.0)]
    for l, kind in enumerate(cfg["layers"]):
        p = f"layers.{l}."
        out += [(p + "attn_norm", (d,), -1.0), (p + "attn.wq", (d, hd), s_d),
                (p + "attn.wk", (d, hd), s_d), (p + "attn.wv", (d, hd), s_d),
                (p + "attn.wo", (hd, d), 1.0 / math.sqrt(hd)),
                (p + "attn.beta", (cfg["n_heads"],), 1.0), (p + "ffn_norm", (d,), -1.0)]
        if kind == "dense":
            f = cfg["ffn_hidden"]
            out += [(p + "ffn.w1", (d, f), s_d), (p + "ffn.w3", (d, f), s_d),
                    (p + "ffn.w2", (f, d), 1.0 / math.sqrt(f))]
        elif kind == "moe":
            E, f = cfg["moe"]["experts"], cfg["moe"]["hidden"]
            out += [(p + "moe.router", (d, E), s_d), (p + "moe.w1", (E, d, f), s_d),
                    (p + "moe.w3", (E, d, f), s_d),
                    (p + "moe.w2", (E, f, d), 1.0 / math.sqrt(f))]
        else:
            out += memory_param_specs(cfg, p + "mem.")
    out += [("norm_f", (d,), -1.0), ("lm_head", (d, V), s_d)]
    return out


def memory_param_specs(cfg, prefix):
    """Returns: the (name, shape, init_std) of one memory layer's weights."""
    m, d = cfg["memory"], cfg["d_model"]
    Hm, r, n, kd, nc = m["heads"], m["tucker_rank"], m["n_keys"], m["k_dim"], m["tucker_cores"]
    out = [(prefix + "wq", (d, Hm * 2 * kd), 1.0 / math.sqrt(d)),
           (prefix + "keys_row", (Hm * r, n, kd), 1.0 / math.sqrt(kd)),
           (prefix + "keys_col", (Hm * r, n, kd), 1.0 / math.sqrt(kd))]
    if m["score"] == "tdqkr":   # files from before MCS hold [Hm][r][r]: same bytes
        out.append((prefix + "core", (Hm, nc, r, r), 1.0))
    out.append((prefix + "ive", (m["ive_groups"], m["v_dim"], d), 1.0 / math.sqrt(m["v_dim"])))
    if m["output_gate"]:
        out += [(prefix + "gate", (d, d), 1.0 / math.sqrt(d)),
                (prefix + "out", (d, d), 1.0 / math.sqrt(d))]
    return out


def rank1(core):
    """Rank-1 factors C ~ u t^T of an r x r core, exactly as us_pk_rank1
    (kernels/score.c): power iteration on C^T C in double from the all-ones
    vector, 100 steps, one restart from the largest diagonal's basis vector,
    sign so that sum(u) >= 0. Returns: (u, t) float64 numpy vectors."""
    c = np.asarray(core, dtype=np.float64)
    r = c.shape[0]
    a = c.T @ c
    v = np.full(r, 1.0 / math.sqrt(r))
    for it in range(100):
        w = a @ v
        norm = math.sqrt(float(w @ w))
        if not norm > 0 or not math.isfinite(norm):
            if it > 0 or norm != 0:
                break
            best = int(np.argmax(np.diag(a)))   # first of equal maxima, as C
            v = np.zeros(r)
            v[best] = 1.0
            if not a[best, best] > 0:
                break
            continue
        v = w / norm
    ud = c @ v
    sign = -1.0 if ud.sum() < 0 else 1.0
    return (sign * ud).astype(np.float32).astype(np.float64), \
        (sign * v).astype(np.float32).astype(np.float64)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def elu1(x):
    return F.elu(x) + 1.0


def swiglu(h, w1, w3, w2):
    return (F.silu(h @ w1) * (h @ w3)) @ w2


def rope(x, theta):
    """Half-split RoPE over the last dim of x [..., L, D], positions 0..L-1
    (angles in float64, then cast). Returns: the rotated tensor."""
    L, D = x.shape[-2], x.shape[-1]
    half = D // 2
    inv = float(np.float32(theta)) ** (-2.0 * np.arange(half) / D)   # C keeps theta f32
    ang = np.arange(L)[:, None] * inv[None, :]
    cos = torch.from_numpy(np.cos(ang)).to(x.dtype)
    sin = torch.from_numpy(np.sin(ang)).to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def _safe_div(num, den):
    """num / den[..., None], 0 where den == 0 (C's rule), with finite grads."""
    zero = den == 0
    q = num / torch.where(zero, torch.ones_like(den), den).unsqueeze(-1)
    return torch.where(zero.unsqueeze(-1), torch.zeros_like(q), q)


class State:
    """A batch of sequence states: `fill` tokens of the unfinished segment
    (the same for every item: forward takes equal-length rows), and per
    layer (M [B][H][dh][dh], z [B][H][dh], k_cache, v_cache [B][fill][H][dh]).
    Tensors keep their autograd history; detach() cuts it (truncated BPTT)."""

    def __init__(self, fill, tokens_seen, layers):
        self.fill, self.tokens_seen, self.layers = fill, tokens_seen, layers

    def detach(self):
        """Returns: a copy without autograd history."""
        return State(self.fill, self.tokens_seen,
                     [tuple(t.detach() for t in st) for st in self.layers])


class _Params(nn.Module):
    """A group of named parameters (attribute names = the C name suffixes)."""

    def add(self, name, shape, dtype):
        self.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=dtype)))


class UltraShardModel(nn.Module):
    """The twin (see the module comment). cfg: a config dict (normalized by
    ultrashard.config if it is not already); values: one tensor per memory
    table [n_keys^2 / ive_groups][v_dim] (None: zeros, then init_random /
    load fill them). Parameters are named as in weights.safetensors
    (state_dict keys "layers.0.attn.wq", ...; value tables "values.<t>")."""

    def __init__(self, cfg, values=None, dtype=torch.float32, sparse_values=False):
        super().__init__()
        self.cfg = usconfig.parse_config(cfg, "model config")
        if sparse_values and self.cfg["memory"]["tucker_cores"] > 1:
            raise ValueError("sparse_values needs tucker_cores 1 (core slices are views of "
                             "the table, and torch has no sparse gradient through a view)")
        self.sparse_values = sparse_values
        self.layers = nn.ModuleList()
        for l, kind in enumerate(self.cfg["layers"]):
            blk = nn.Module()
            blk.kind = kind
            for sub in ("attn", {"dense": "ffn", "moe": "moe", "memory": "mem"}[kind]):
                setattr(blk, sub, _Params())
            self.layers.append(blk)
        for name, shape, _ in param_specs(self.cfg):
            parts = name.split(".")
            if len(parts) == 1:
                self.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=dtype)))
            elif len(parts) == 3:
                self.layers[int(parts[1])].register_parameter(
                    parts[2], nn.Parameter(torch.zeros(shape, dtype=dtype)))
            else:
                getattr(self.layers[int(parts[1])], parts[2]).add(parts[3], shape, dtype)
        rows, vd = usconfig.table_rows(self.cfg), self.cfg["memory"]["v_dim"]
        n_tables = len(usconfig.memory_layers(self.cfg))
        if values is None:
            values = [torch.zeros(rows, vd, dtype=dtype) for _ in range(n_tables)]
        if len(values) != n_tables:
            raise ValueError(f"model has {n_tables} memory tables, got {len(values)} value "
                             "tensors")
        for t, v in enumerate(values):
            v = torch.as_tensor(v)
            if tuple(v.shape) != (rows, vd):
                raise ValueError(f"value table {t}: shape {tuple(v.shape)}, the config "
                                 f"wants ({rows}, {vd})")
        self.values = nn.ParameterList([nn.Parameter(torch.as_tensor(v).to(dtype).clone())
                                        for v in values])

    # ---- parameters by C name ----

    def named_weights(self):
        """Returns: list of (C name, parameter) in storage order (no values)."""
        return [(name, self.weight(name)) for name, _, _ in param_specs(self.cfg)]

    def weight(self, name):
        """Returns: the parameter with the C name `name`. Raises AttributeError
        or IndexError for a name the model does not have."""
        obj = self
        for part in name.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return obj

    @torch.no_grad()
    def init_random(self, seed=0):
        """Fills weights with N(0, init_std) (norm gains 1) and value tables
        with U[-1, 1), from a torch generator seeded with `seed` (not the
        same numbers as C's init-model). Returns: self."""
        g = torch.Generator().manual_seed(seed)
        for name, _, std in param_specs(self.cfg):
            p = self.weight(name)
            if std < 0:
                p.fill_(-std)
            else:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * std)
        for v in self.values:
            v.copy_(torch.rand(v.shape, generator=g, dtype=torch.float64) * 2 - 1)
        return self

    # ---- forward ----

    def initial_state(self, batch):
        """Returns: an empty State for `batch` sequences (zero M, z)."""
        c, dt = self.cfg, self.tok_emb.dtype
        H, dh = c["n_heads"], c["head_dim"]
        return State(0, 0, [(torch.zeros(batch, H, dh, dh, dtype=dt),
                             torch.zeros(batch, H, dh, dtype=dt),
                             torch.zeros(batch, 0, H, dh, dtype=dt),
                             torch.zeros(batch, 0, H, dh, dtype=dt))
                            for _ in range(c["n_layers"])])

    def forward(self, tokens, state=None):
        """tokens: LongTensor [B][T] of ids in [0, 259). state: from a previous
        call on the same sequences (None: empty). Returns: (logits
        [B][T][259], the new State). Raises ValueError on a bad token."""
        c = self.cfg
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [B][T], got shape {tuple(tokens.shape)}")
        B, T = tokens.shape
        if T and (int(tokens.min()) < 0 or int(tokens.max()) >= c["vocab_size"]):
            raise ValueError(f"token ids must be in [0, {c['vocab_size']})")
        if state is None:
            state = self.initial_state(B)
        if T == 0:
            return self.lm_head.new_zeros(B, 0, c["vocab_size"]), state
        eps, n = c["norm_eps"], c["n_layers"]
        x = self.tok_emb[tokens]
        pending, new_layers, table = {}, [], 0
        for l, blk in enumerate(self.layers):
            a, st = self._attention(blk.attn, rmsnorm(x, blk.attn_norm, eps),
                                    state.layers[l], state.fill)
            new_layers.append(st)
            x = x + a
            h = rmsnorm(x, blk.ffn_norm, eps)
            if blk.kind == "dense":
                x = x + swiglu(h, blk.ffn.w1, blk.ffn.w3, blk.ffn.w2)
            elif blk.kind == "moe":
                x = x + self._moe(blk.moe, h)
            else:
                target = min(l + c["memory"]["skip"], n - 1)
                y = self._memory(blk.mem, h, self.values[table])
                pending[target] = y if target not in pending else pending[target] + y
                table += 1
            if l in pending:
                x = x + pending.pop(l)
        logits = rmsnorm(x, self.norm_f, eps) @ self.lm_head
        L = c["segment_len"]
        return logits, State((state.fill + T) % L, state.tokens_seen + T, new_layers)

    def _attention(self, w, h, st, fill):
        """Infini-attention of one layer over the call's tokens laid on the
        segment grid (see the module comment). Returns: (Wo . out [B][T][d],
        the layer's new (M, z, k_cache, v_cache))."""
        c = self.cfg
        B, T, _ = h.shape
        H, dh, L = c["n_heads"], c["head_dim"], c["segment_len"]
        q, k, v = ((h @ p).view(B, T, H, dh) for p in (w.wq, w.wk, w.wv))
        M0, z0, kc, vc = st
        P = fill + T
        n_seg, complete = -(-P // L), P // L
        pad = q.new_zeros(B, n_seg * L - P, H, dh)
        k_seq, v_seq = torch.cat([kc, k], 1), torch.cat([vc, v], 1)

        def grid(t):   # [B][n_seg*L][H][dh] -> [B][H][n_seg][L][dh]
            return torch.cat([t, pad], 1).view(B, n_seg, L, H, dh).permute(0, 3, 1, 2, 4)
        Q, K, V = grid(torch.cat([q.new_zeros(B, fill, H, dh), q], 1)), grid(k_seq), grid(v_seq)
        Qr, Kr = (rope(Q, c["rope_theta"]), rope(K, c["rope_theta"])) \
            if c["rope_theta"] > 0 else (Q, K)
        s = (Qr @ Kr.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        a_dot = torch.softmax(s.masked_fill(~causal, float("-inf")), -1) @ V
        sq, sk = elu1(Q), elu1(K)
        Ms, zs, M, z = self._memory_walk(sk, V, M0, z0, n_seg, complete)
        a_mem = _safe_div(sq @ Ms, (sq * zs.unsqueeze(-2)).sum(-1))
        g = torch.sigmoid(w.beta).view(1, H, 1, 1, 1)
        out = g * a_mem + (1 - g) * a_dot
        out = out.permute(0, 2, 3, 1, 4).reshape(B, n_seg * L, H * dh)[:, fill:P]
        new_fill = P % L
        st = (M, z, k_seq[:, P - new_fill:], v_seq[:, P - new_fill:])
        return out @ w.wo, st

    def _memory_walk(self, sk, V, M0, z0, n_seg, complete):
        """M, z before each segment ([B][H][n_seg][dh][dh], [B][H][n_seg][dh])
        and after the last complete one. Linear rule: exclusive cumulative
        sums (parallel); delta rule: a loop over the segments."""
        if self.cfg["infini_rule"] == "linear":
            dM = sk[:, :, :complete].transpose(-1, -2) @ V[:, :, :complete]
            dz = sk[:, :, :complete].sum(-2)
            Ms = torch.cat([M0.unsqueeze(2), M0.unsqueeze(2) + dM.cumsum(2)], 2)
            zs = torch.cat([z0.unsqueeze(2), z0.unsqueeze(2) + dz.cumsum(2)], 2)
            return Ms[:, :, :n_seg], zs[:, :, :n_seg], Ms[:, :, complete], zs[:, :, complete]
        Ms, zs, M, z = [], [], M0, z0
        for s in range(n_seg):
            Ms.append(M)
            zs.append(z)
            if s < complete:
                ks, vs = sk[:, :, s], V[:, :, s]
                dv = vs - _safe_div(ks @ M, (ks * z.unsqueeze(-2)).sum(-1))
                M = M + ks.transpose(-1, -2) @ dv
                z = z + ks.sum(-2)
        return torch.stack(Ms, 2), torch.stack(zs, 2), M, z

    def _moe(self, w, h):
        """Top-k experts per token by router logit; weights = softmax over the
        selected logits; experts are SwiGLU FFNs. Returns: [B][T][d]."""
        B, T, d = h.shape
        K = self.cfg["moe"]["top_k"]
        hf = h.reshape(B * T, d)
        top_v, top_i = (hf @ w.router).topk(K, dim=-1)
        gate = torch.softmax(top_v, -1)
        out = torch.zeros_like(hf)
        for e in range(self.cfg["moe"]["experts"]):
            rows, slot = (top_i == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            y = swiglu(hf[rows], w.w1[e], w.w3[e], w.w2[e]) * gate[rows, slot].unsqueeze(-1)
            out = out.index_add(0, rows, y)
        return out.view(B, T, d)

    def _memory(self, w, h, table):
        """One memory layer (see the module comment). Returns: [B][T][d]."""
        c, m = self.cfg, self.cfg["memory"]
        B, T, d = h.shape
        N = B * T
        Hm, kd, n, r = m["heads"], m["k_dim"], m["n_keys"], m["tucker_rank"]
        hf = h.reshape(N, d)
        q = (hf @ w.wq).view(N, Hm, 2, kd)
        if m["query_norm"] == "layernorm":
            q = F.layer_norm(q, (kd,), eps=c["norm_eps"])
        elif m["query_norm"] == "l2":
            q = F.normalize(q, dim=-1, eps=1e-12)
        s_row = torch.einsum("nhd,hrkd->nhrk", q[:, :, 0], w.keys_row.view(Hm, r, n, kd))
        s_col = torch.einsum("nhd,hrkd->nhrk", q[:, :, 1], w.keys_col.view(Hm, r, n, kd))
        addr, scores = self._select(w, s_row, s_col)
        if m["weights"] == "softmax":
            scores = torch.softmax(scores, -1)
        pooled = self._pool(addr, scores, table, N)
        G, vd = m["ive_groups"], m["v_dim"]
        y = pooled.view(N, G * vd) @ w.ive.view(G * vd, d)
        if m["output_gate"]:
            y = (y * F.silu(hf @ w.gate)) @ w.out
        return y.view(B, T, d)

    def _select(self, w, s_row, s_col):
        """Product-key selection (kernels/score.h). s_row, s_col [N][Hm][r][n].
        Returns: (addresses [N][Hm][knn] (long), scores [N][Hm][m][knn] with
        autograd through s_row, s_col and the core)."""
        m = self.cfg["memory"]
        N, Hm, r, n = s_row.shape
        kp, knn = m["candidates"], m["knn"]
        with torch.no_grad():
            if m["score"] == "pkm":
                pre_r, pre_c = s_row[:, :, 0], s_col[:, :, 0]
            else:
                core = w.core.detach().view(Hm, -1, r, r).sum(1).double().cpu().numpy()
                ut = [rank1(core[i]) for i in range(Hm)]
                u = torch.tensor(np.stack([a for a, _ in ut]), dtype=s_row.dtype)
                t = torch.tensor(np.stack([b for _, b in ut]), dtype=s_row.dtype)
                pre_r = torch.einsum("hr,nhrk->nhk", u, s_row)
                pre_c = torch.einsum("hr,nhrk->nhk", t, s_col)
            rows = pre_r.topk(kp, -1).indices.sort(-1).values     # grid in row-id order
            cols = pre_c.topk(kp, -1).indices.sort(-1).values
        sr = s_row.gather(3, rows.unsqueeze(2).expand(N, Hm, r, kp))
        sc = s_col.gather(3, cols.unsqueeze(2).expand(N, Hm, r, kp))
        if m["score"] == "pkm":
            grid = (sr[:, :, 0, :, None] + sc[:, :, 0, None, :]).unsqueeze(2)
        else:
            cores = w.core.view(Hm, -1, r, r)
            grid = torch.einsum("nhai,hcab,nhbj->nhcij", sr, cores, sc)
        grid = grid.flatten(-2)                                   # [N][Hm][m][kp*kp]
        with torch.no_grad():
            pos = grid.detach().sum(2).topk(knn, -1).indices      # [N][Hm][knn]
        scores = grid.gather(3, pos.unsqueeze(2).expand(N, Hm, grid.shape[2], knn))
        addr = rows.gather(2, pos // kp) * n + cols.gather(2, pos % kp)
        return addr, scores

    def _pool(self, addr, weights, table, N):
        """Grouped weighted sums P [N][G][v_dim] of the value rows: physical
        row = addr // G into group addr % G, heads pooled together; core c's
        weights apply to column slice c. One EmbeddingBag call, bags =
        (token, group, core slice). Returns: P (autograd to weights, table)."""
        m = self.cfg["memory"]
        G, vd = m["ive_groups"], m["v_dim"]
        _, Hm, mc, knn = weights.shape
        with torch.no_grad():
            phys, grp = addr // G, addr % G                        # [N][Hm][knn]
            core = torch.arange(mc).view(1, 1, mc, 1)
            idx = phys.unsqueeze(2) * mc + core                    # [N][Hm][mc][knn]
            tok = torch.arange(N).view(N, 1, 1, 1)
            bag = ((tok * G + grp.unsqueeze(2)) * mc + core).expand(N, Hm, mc, knn).reshape(-1)
            order = torch.sort(bag, stable=True).indices
            counts = torch.bincount(bag, minlength=N * G * mc)
            offsets = counts.cumsum(0) - counts
            idx = idx.expand(N, Hm, mc, knn).reshape(-1)[order]
        wts = weights.reshape(-1)[order]
        rows = table if mc == 1 else table.view(-1, vd // mc)   # sparse grads: no view
        pooled = F.embedding_bag(idx, rows, offsets, mode="sum",
                                 per_sample_weights=wts, sparse=self.sparse_values)
        return pooled.view(N, G, vd)
