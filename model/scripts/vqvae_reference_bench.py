"""The PyTorch reference's VQ-VAE train step, timed on this machine in the
same minutes as ours.

NOTES.md gives the official VideoGPT code's seconds per step at two
configurations (`reference-64`, `reference-240`), measured once. This
machine's speed drifts by 20-40% from one quarter of an hour to the next, so
a step of ours timed today against a figure timed on another day can be
off by more than the gap being measured. This script times the official
code itself, from a clone of https://github.com/wilson1yan/VideoGPT (not
on PyPI), alternating with `model/benches/vqvae.rs --case` run by run.

    # one timing of the reference, as a JSON line
    python vqvae_reference_bench.py --videogpt ~/VideoGPT step reference-240
    # rounds of (reference, ours), a summary, target/bench/vqvae_vs_reference.json
    python vqvae_reference_bench.py --videogpt ~/VideoGPT alternate reference-240 --rounds 6

The reference step is what the official `train_vqvae.py` runs per batch:
`VQVAE(args).training_step` on random clips in [-0.5, 0.5), `backward()`,
and a step of the Adam optimiser from its `configure_optimizers()`; median of
`--steps` steps after `--warmup` steps, batch 2, clips 3x16x64x64, as many
torch threads as this process may use cores (rayon's count for ours).
`pytorch_lightning` is imported by `videogpt/vqvae.py` only for the
`LightningModule` base class; where it is not installed a stand-in base
class (a plain `nn.Module`) is used, since the step calls none of Lightning.
Needs torch and numpy: `./setup.sh --torch-reference` makes `.venv-torch`.
"""

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

# NOTES.md's two configurations: (n_hiddens, n_res_layers, embedding_dim, n_codes), downsample 4,4,4.
CASES = {
    "reference-64": (64, 2, 64, 512),
    "reference-240": (240, 4, 256, 1024),
}
# NOTES.md's figures for the same cases (seconds per step), for the summary.
NOTES_SECONDS = {"reference-64": 0.161, "reference-240": 1.435}
BATCH = 2
CLIP = (3, 16, 64, 64)


def fail(message):
    print(f"vqvae_reference_bench.py: {message}", file=sys.stderr)
    sys.exit(2)


def import_official_vqvae(clone):
    """`videogpt.vqvae.VQVAE` from the clone at `clone`."""
    if not (clone / "videogpt" / "vqvae.py").is_file():
        fail(f"--videogpt {clone}: no videogpt/vqvae.py there (expected a clone of wilson1yan/VideoGPT)")
    import torch.nn as nn

    try:
        import pytorch_lightning  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("pytorch_lightning")

        class LightningModule(nn.Module):
            def save_hyperparameters(self, *args, **kwargs):
                pass

            def log(self, *args, **kwargs):
                pass

        stand_in.LightningModule = LightningModule
        sys.modules["pytorch_lightning"] = stand_in
    sys.path.insert(0, str(clone))
    from videogpt.vqvae import VQVAE

    return VQVAE


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_reference(clone, case, warmup, steps, seed):
    import numpy as np
    import torch

    vqvae_class = import_official_vqvae(clone)
    torch.set_num_threads(usable_cores())
    torch.manual_seed(seed)
    n_hiddens, n_res_layers, embedding_dim, n_codes = CASES[case]
    args = argparse.Namespace(
        n_hiddens=n_hiddens,
        n_res_layers=n_res_layers,
        embedding_dim=embedding_dim,
        n_codes=n_codes,
        downsample=(4, 4, 4),
        sequence_length=CLIP[1],
        resolution=CLIP[2],
    )
    model = vqvae_class(args)
    model.train()
    optimizer = model.configure_optimizers()
    batch = {"video": torch.rand(BATCH, *CLIP) - 0.5}
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = model.training_step(batch, i)
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        if not math.isfinite(loss.item()):
            fail(f"{case}: the reference's loss is {loss.item()} at step {i}")
        if i >= warmup:
            times.append(elapsed)
    median = statistics.median(times)
    return {
        "case": case,
        "implementation": "pytorch-reference",
        "batch": BATCH,
        "warmup": warmup,
        "measured": steps,
        "median_step_s": median,
        "fastest_step_s": min(times),
        "steps_per_s": 1.0 / median,
        "peak_rss_mb": peak_rss_mb(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "numpy": np.__version__,
    }


def run_json(command, what):
    """Runs `command`; its last stdout line, as JSON."""
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        fail(f"{what} failed (exit {done.returncode}): {shlex.join(command)}\n{done.stderr[-2000:]}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        fail(f"{what}: last line of output is not JSON: {lines[-1][:200]}")


def alternate(options):
    """Rounds of (reference, ours), each in a fresh process, and their summary."""
    ours_prefix = shlex.split(options.ours)
    pairs = []
    for round_index in range(options.rounds):
        reference = run_json(
            [sys.executable, __file__, "--videogpt", str(options.videogpt), "step", options.case,
             "--warmup", str(options.warmup), "--steps", str(options.steps)],
            "the reference",
        )
        ours = run_json(
            ours_prefix + ["--case", options.case, str(BATCH), str(options.warmup), str(options.steps)],
            "our bench",
        )
        ratio = reference["median_step_s"] / ours["median_step_s"]
        pairs.append({"reference": reference, "ours": ours, "speedup": ratio})
        print(
            f"round {round_index + 1}: reference {reference['median_step_s']:.3f} s "
            f"(fastest {reference['fastest_step_s']:.3f}, {reference['peak_rss_mb']:.0f} MB), "
            f"ours {ours['median_step_s']:.3f} s (fastest {ours['fastest_step_s']:.3f}, "
            f"{ours['peak_rss_mb']:.0f} MB): {ratio:.2f}x",
            flush=True,
        )
    speedups = [p["speedup"] for p in pairs]
    summary = {
        "case": options.case,
        "rounds": options.rounds,
        "reference_median_s": statistics.median(p["reference"]["median_step_s"] for p in pairs),
        "ours_median_s": statistics.median(p["ours"]["median_step_s"] for p in pairs),
        "speedup_geometric_mean": math.exp(statistics.fmean(math.log(s) for s in speedups)),
        "speedup_min": min(speedups),
        "speedup_max": max(speedups),
        "rounds_ours_faster": sum(s > 1.0 for s in speedups),
        "notes_md_reference_s": NOTES_SECONDS[options.case],
        "pairs": pairs,
    }
    print(
        f"{options.case}: reference median {summary['reference_median_s']:.3f} s "
        f"(NOTES.md: {NOTES_SECONDS[options.case]} s), ours {summary['ours_median_s']:.3f} s; "
        f"speedup {summary['speedup_geometric_mean']:.2f}x (geometric mean; "
        f"{summary['speedup_min']:.2f}-{summary['speedup_max']:.2f}x), "
        f"ours faster in {summary['rounds_ours_faster']} of {options.rounds} rounds"
    )
    out = Path(options.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(out.read_text()) if out.is_file() else {}
    existing[options.case] = summary
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(existing, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videogpt", type=Path, required=True, help="a clone of wilson1yan/VideoGPT")
    modes = parser.add_subparsers(dest="mode", required=True)
    step = modes.add_parser("step", help="time the reference once; prints a JSON line")
    step.add_argument("case", choices=sorted(CASES))
    step.add_argument("--warmup", type=int, default=2)
    step.add_argument("--steps", type=int, default=5)
    step.add_argument("--seed", type=int, default=0)
    both = modes.add_parser("alternate", help="alternate reference and ours, round by round")
    both.add_argument("case", choices=sorted(CASES))
    both.add_argument("--rounds", type=int, default=6)
    both.add_argument("--warmup", type=int, default=2)
    both.add_argument("--steps", type=int, default=5)
    both.add_argument(
        "--ours",
        default="cargo bench -q --workspace --bench vqvae --",
        help="command that runs our bench; '--case CASE 2 WARMUP STEPS' is appended",
    )
    both.add_argument("--output", default="target/bench/vqvae_vs_reference.json")
    options = parser.parse_args()
    for name in ("warmup", "steps", "rounds"):
        value = getattr(options, name, 1)
        if value < (0 if name == "warmup" else 1):
            fail(f"--{name} {value}: must be at least {0 if name == 'warmup' else 1}")
    if options.mode == "step":
        print(json.dumps(time_reference(options.videogpt, options.case, options.warmup, options.steps, options.seed)))
    else:
        import_check = options.videogpt / "videogpt" / "vqvae.py"
        if not import_check.is_file():
            fail(f"--videogpt {options.videogpt}: no videogpt/vqvae.py there (expected a clone of wilson1yan/VideoGPT)")
        alternate(options)


if __name__ == "__main__":
    main()
