"""ultrashard.io — model directories (coordinator/model/model_io.h), from Python.

  config.json            the shape (ultrashard.config; C's reader accepts it)
  weights.safetensors    every parameter of model.param_specs(), f32, in
                         storage order (ultrashard.safetensors)
  values/table_<t>.npy   memory table t: f32 [n_keys^2 / ive_groups][v_dim]

save_model writes config.json last (as C does: a directory with a config has
complete weights). load_model checks every tensor's presence and element
count against the config and refuses unexpected tensors, naming the file and
tensor, as us_model_load does; a tensor whose shape differs but whose bytes
fit (the core [Hm][r][r] vs [Hm][1][r][r]) is reshaped.
"""
import os

import numpy as np
import torch

from . import config as usconfig
from . import safetensors
from .model import UltraShardModel, param_specs


class ModelDirError(ValueError):
    """A model directory that does not match its config (message names it)."""


def _write_npy(path, array):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype="<f4"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_model(model, directory, overwrite=True):
    """Writes model (UltraShardModel) as a model directory (created if
    missing). Returns: nothing. Raises FileExistsError when a file exists
    and not overwrite; OSError."""
    os.makedirs(directory, exist_ok=True)
    cfg_path = os.path.join(directory, "config.json")
    w_path = os.path.join(directory, "weights.safetensors")
    if not overwrite:
        for p in (cfg_path, w_path):
            if os.path.exists(p):
                raise FileExistsError(f"{p}: exists (overwrite=False)")
    tensors = {name: p.detach().float() for name, p in model.named_weights()}
    safetensors.write(w_path, tensors)
    if len(model.values):
        vdir = os.path.join(directory, "values")
        os.makedirs(vdir, exist_ok=True)
        for t, v in enumerate(model.values):
            _write_npy(os.path.join(vdir, f"table_{t}.npy"), v.detach().float().cpu().numpy())
    tmp = cfg_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(usconfig.to_json_text(model.cfg))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, cfg_path)


def read_weights(directory, cfg):
    """Reads weights.safetensors and checks it against cfg.
    Returns: dict C name -> numpy f32 array shaped as param_specs says.
    Raises ModelDirError naming the file and tensor; OSError."""
    path = os.path.join(directory, "weights.safetensors")
    tensors = safetensors.read(path)
    out = {}
    for name, shape, _ in param_specs(cfg):
        if name not in tensors:
            raise ModelDirError(f"{path}: tensor '{name}' is missing")
        t = tensors[name]
        if t.dtype != np.float32 or t.size != int(np.prod(shape)):
            raise ModelDirError(f"{path}: tensor '{name}' is {t.dtype} {list(t.shape)}, "
                                f"config.json wants f32 {list(shape)}")
        out[name] = np.array(t).reshape(shape)
    for name in tensors:
        if name not in out:
            raise ModelDirError(f"{path}: unexpected tensor '{name}' (not a parameter of the "
                                "model in config.json)")
    return out


def read_values(directory, cfg):
    """Reads values/table_<t>.npy of every memory layer, checking dtype and
    shape. Returns: list of numpy f32 arrays. Raises ModelDirError, OSError."""
    rows, vd = usconfig.table_rows(cfg), cfg["memory"]["v_dim"]
    out = []
    for t, layer in enumerate(usconfig.memory_layers(cfg)):
        path = os.path.join(directory, "values", f"table_{t}.npy")
        a = np.load(path, mmap_mode="r")
        if a.dtype != np.float32 or a.shape != (rows, vd):
            raise ModelDirError(f"{path}: table is {a.dtype} {list(a.shape)}, the model "
                                f"(memory layer {layer}) wants f32 [{rows}, {vd}]")
        out.append(np.array(a))
    return out


def load_model(directory, dtype=torch.float32, sparse_values=False):
    """Loads a model directory (written by `ultrashard init-model`, C's
    us_model_save or save_model). Returns: UltraShardModel. Raises
    ConfigError, ModelDirError, OSError naming the file."""
    cfg = usconfig.load_config(os.path.join(directory, "config.json"))
    weights = read_weights(directory, cfg)
    values = [torch.from_numpy(v) for v in read_values(directory, cfg)]
    model = UltraShardModel(cfg, values, dtype=dtype, sparse_values=sparse_values)
    with torch.no_grad():
        for name, p in model.named_weights():
            p.copy_(torch.from_numpy(weights[name]))
    return model
