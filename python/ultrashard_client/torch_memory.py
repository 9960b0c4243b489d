"""RemoteMemory: a PyTorch module whose forward is one remote memory layer.

forward(h) sends h ([T][d_model], or [..., d_model], flattened over the
leading dimensions) to `ultrashard serve` as a Memory request for `table`
and returns the layer's output (the projected pooled values the model adds
to its residual stream) as a float32 tensor on h's device, shaped like h.

No gradient flows to the server: the values and keys live in the service
and are not trained through this module. The output is a constant with
respect to the server's parameters and is returned detached
(requires_grad False); train the local layers around it, or train the
memory layer with the PyTorch twin and re-export the store.
The selection (rows, weights) of the last call is kept in last_rows /
last_weights for inspection.
"""

import numpy as np
import torch

from .client import Client


class RemoteMemory(torch.nn.Module):
    """RemoteMemory(client_or_address, table): client_or_address is a Client
    or (host, port[, token])."""

    def __init__(self, client, table):
        super().__init__()
        self.client = client if isinstance(client, Client) else Client(*client)
        self.table = table
        self.last_rows = None
        self.last_weights = None

    def forward(self, h):
        flat = h.detach().reshape(-1, h.shape[-1]).to("cpu", torch.float32).numpy()
        rows, weights, out = self.client.memory(self.table, np.ascontiguousarray(flat))
        self.last_rows, self.last_weights = rows, weights
        return torch.from_numpy(out).reshape(h.shape).to(h.device)
