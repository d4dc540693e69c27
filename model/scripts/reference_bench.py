"""The PyTorch reference's train steps (VQ-VAE and prior), timed on this
machine in the same minutes as ours.

docs/performance.md records the official VideoGPT code's seconds per step at three
configurations (the VQ-VAE's `reference-64` and `reference-240`, and the
prior's), measured once. This
machine's speed drifts by 20-40% from one quarter of an hour to the next, so
a step of ours timed today against a figure timed on another day can be
off by more than the gap being measured. This script times the official
code itself, from a clone of https://github.com/wilson1yan/VideoGPT (not
on PyPI), alternating run by run with `model/benches/vqvae.rs --case` or
`model/benches/prior.rs --train-step`.

    # one timing of the reference, as a JSON line
    python reference_bench.py --videogpt ~/VideoGPT step reference-240
    # rounds of (reference, ours), a summary, target/bench/reference.json
    python reference_bench.py --videogpt ~/VideoGPT alternate reference-240 --rounds 6
    # the same with bf16 columns: the reference under torch.autocast(bfloat16)
    # and ours with --precision bf16, four timings per round
    python reference_bench.py --videogpt ~/VideoGPT alternate prior --bf16

The VQ-VAE step is what the official `train_vqvae.py` runs per batch:
`VQVAE(args).training_step` on random clips in [-0.5, 0.5), `backward()`,
and a step of the Adam optimiser from its `configure_optimizers()`; batch 2,
clips 3x16x64x64. The prior step (case `prior`) is the transformer of
`VideoGPT.forward` (`fc_in`, `AttentionStack`, `LayerNorm`, `fc_out`, cross
entropy), built from the official modules with the configuration of docs/performance.md
(4x16x16 tokens, 512 codes, hidden 192, 4 heads, 4 layers, full attention,
dropout 0.2, attention dropout 0.3), on random tokens looked up in a random
256-wide codebook, batch 4, Adam at 3e-4; `VideoGPT.training_step` would
first encode clips with a trained VQ-VAE, which ours reads from token
tables instead. Both: median of `--steps` steps after `--warmup` steps, as
many torch threads as this process may use cores (rayon's count for ours).
The package's `__init__` is not run (it imports the data and download
modules and their dependencies). `pytorch_lightning` is imported by
`videogpt/vqvae.py` only for the
`LightningModule` base class; where it is not installed a stand-in base
class (a plain `nn.Module`) is used, since the step calls none of Lightning.
Needs torch and numpy: `./setup.sh --torch-reference` makes `.venv-torch`.
"""

import argparse
import contextlib
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

# The two configurations of docs/performance.md: (n_hiddens, n_res_layers, embedding_dim, n_codes), downsample 4,4,4.
CASES = {
    "reference-64": (64, 2, 64, 512),
    "reference-240": (240, 4, 256, 1024),
}
BATCH = 2
CLIP = (3, 16, 64, 64)
# The prior of docs/performance.md: token grid, codes, hidden, heads, layers; batch 4.
PRIOR_GRID = (4, 16, 16)
PRIOR_CODES, PRIOR_HIDDEN, PRIOR_HEADS, PRIOR_LAYERS, PRIOR_BATCH = 512, 192, 4, 4, 4
PRIOR_EMBEDDING_DIM = 256
ALL_CASES = sorted(CASES) + ["prior"]


def fail(message):
    print(f"reference_bench.py: {message}", file=sys.stderr)
    sys.exit(2)


def check_clone(clone):
    if not (clone / "videogpt" / "vqvae.py").is_file():
        fail(f"--videogpt {clone}: no videogpt/vqvae.py there (expected a clone of wilson1yan/VideoGPT)")


def import_official(clone):
    """The clone's `videogpt` package (`vqvae`, `attention`, `utils`)."""
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
    # The package's __init__ imports its data, download and GPT modules too
    # (h5py, av, requests, tqdm...); the steps need only these three, so the
    # package is registered without running it.
    package = types.ModuleType("videogpt")
    package.__path__ = [str(clone / "videogpt")]
    sys.modules["videogpt"] = package
    import videogpt.attention
    import videogpt.utils
    import videogpt.vqvae

    return videogpt


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def autocast(precision):
    """The forward pass's context: `torch.autocast` to bfloat16 on the CPU
    (what a PyTorch user turns on for mixed precision), or nothing."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def vqvae_step(videogpt, case, precision="f32"):
    """A closure running one VQ-VAE train step (returns the loss) and the batch size."""
    import torch

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
    model = videogpt.vqvae.VQVAE(args)
    model.train()
    optimizer = model.configure_optimizers()
    batch = {"video": torch.rand(BATCH, *CLIP) - 0.5}

    def step(i):
        optimizer.zero_grad()
        with autocast(precision):
            loss = model.training_step(batch, i)
        loss.backward()
        optimizer.step()
        return loss

    return step, BATCH


def prior_step(videogpt, precision="f32"):
    """One prior train step as `VideoGPT.forward` runs it after the VQ-VAE encode."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    attention = videogpt.attention
    fc_in = nn.Linear(PRIOR_EMBEDDING_DIM, PRIOR_HIDDEN, bias=False)
    fc_in.weight.data.normal_(std=0.02)
    attn_stack = attention.AttentionStack(
        PRIOR_GRID, PRIOR_HIDDEN, PRIOR_HEADS, PRIOR_LAYERS, 0.2, "full", 0.3, None, None
    )
    norm = attention.LayerNorm(PRIOR_HIDDEN, None)
    fc_out = nn.Linear(PRIOR_HIDDEN, PRIOR_CODES, bias=False)
    fc_out.weight.data.copy_(torch.zeros(PRIOR_CODES, PRIOR_HIDDEN))
    model = nn.ModuleList([fc_in, attn_stack, norm, fc_out])
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.999))
    codebook = torch.randn(PRIOR_CODES, PRIOR_EMBEDDING_DIM)
    targets = torch.randint(0, PRIOR_CODES, (PRIOR_BATCH, *PRIOR_GRID))
    x = F.embedding(targets, codebook)

    def step(_):
        optimizer.zero_grad()
        with autocast(precision):
            h = attn_stack(fc_in(x), {}, None, None)
            logits = fc_out(norm(h, {}))
            loss = F.cross_entropy(videogpt.utils.shift_dim(logits, -1, 1), targets)
        loss.backward()
        optimizer.step()
        return loss

    return step, PRIOR_BATCH


def time_reference(clone, case, warmup, steps, seed, precision="f32"):
    import warnings

    import numpy as np
    import torch

    # The official AttentionBlock calls torch.utils.checkpoint with the
    # default `use_reentrant`, which recent torch warns about on every call.
    warnings.filterwarnings("ignore", message="torch.utils.checkpoint: the use_reentrant")

    videogpt = import_official(clone)
    torch.set_num_threads(usable_cores())
    torch.manual_seed(seed)
    step, batch = prior_step(videogpt, precision) if case == "prior" else vqvae_step(videogpt, case, precision)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = step(i)
        elapsed = time.perf_counter() - start
        if not math.isfinite(loss.item()):
            fail(f"{case}: the reference's loss is {loss.item()} at step {i}")
        if i >= warmup:
            times.append(elapsed)
    median = statistics.median(times)
    return {
        "case": case,
        "implementation": "pytorch-reference",
        "precision": precision,
        "batch": batch,
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


def our_result(bench_output):
    """Our bench's JSON line with the reference's field names. The prior
    bench names its median `median_s`, gives the recorded figure (docs/performance.md) as a rate
    (`reference`, steps/s), and reports no fastest step or peak RSS."""
    result = dict(bench_output)
    result.setdefault("median_step_s", result.get("median_s"))
    if "reference_step_s" not in result and result.get("reference"):
        result["reference_step_s"] = 1.0 / result["reference"]
    result.setdefault("fastest_step_s", None)
    result.setdefault("peak_rss_mb", None)
    return result


def summarise(case, pairs):
    """The rounds' medians, speedups (reference / ours) and the recorded figure (docs/performance.md)."""
    speedups = [p["speedup"] for p in pairs]
    return {
        "case": case,
        "rounds": len(pairs),
        "reference_median_s": statistics.median(p["reference"]["median_step_s"] for p in pairs),
        "ours_median_s": statistics.median(p["ours"]["median_step_s"] for p in pairs),
        "speedup_geometric_mean": math.exp(statistics.fmean(math.log(s) for s in speedups)),
        "speedup_min": min(speedups),
        "speedup_max": max(speedups),
        "rounds_ours_faster": sum(s > 1.0 for s in speedups),
        # As our bench reports it (the figure its "vs reference" divides by).
        "recorded_reference_s": pairs[0]["ours"].get("reference_step_s"),
        "pairs": pairs,
        **bf16_summary(pairs),
    }


def bf16_summary(pairs):
    """With bf16 columns: their medians and ours in bf16 against each of the
    reference's steps (geometric means over rounds), else nothing."""
    if not pairs or "ours_bf16" not in pairs[0]:
        return {}

    def ratio(numerator, denominator):
        logs = [math.log(p[numerator]["median_step_s"] / p[denominator]["median_step_s"]) for p in pairs]
        return math.exp(statistics.fmean(logs))

    best_reference = [min(p["reference"]["median_step_s"], p["reference_bf16"]["median_step_s"]) for p in pairs]
    return {
        "reference_bf16_median_s": statistics.median(p["reference_bf16"]["median_step_s"] for p in pairs),
        "ours_bf16_median_s": statistics.median(p["ours_bf16"]["median_step_s"] for p in pairs),
        "ours_cpu_path": pairs[0]["ours_bf16"].get("cpu_path"),
        "reference_bf16_vs_reference_f32": ratio("reference", "reference_bf16"),
        "ours_bf16_vs_ours_f32": ratio("ours", "ours_bf16"),
        "ours_bf16_vs_reference_f32": ratio("reference", "ours_bf16"),
        "ours_bf16_vs_best_reference": math.exp(statistics.fmean(
            math.log(best / p["ours_bf16"]["median_step_s"]) for best, p in zip(best_reference, pairs))),
    }


def fractions_of_peak(pairs, peak):
    """Our steps' product rates (where our bench counts their FLOPs) as
    fractions of all cores' f32 FMA peak and AMX bf16 peak."""
    fractions = {}
    for column, peak_key in (("ours", "f32_fma_gflops"), ("ours_bf16", "f32_fma_gflops"), ("ours_bf16", "amx_bf16_gflops")):
        rates = [p[column].get("gflops") for p in pairs]
        if all(rates) and peak.get(peak_key):
            fractions[f"{column}_gflops"] = statistics.median(rates)
            fractions[f"{column}_fraction_of_{peak_key.removesuffix('_gflops')}_peak"] = statistics.median(rates) / peak[peak_key]
    return fractions


def write_summary(path, summary):
    """Adds `summary` under its case to the JSON file at `path`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.is_file() else {}
    existing[summary["case"]] = summary
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(existing, indent=2))
    tmp.replace(path)


def describe(result):
    """`1.234 s (fastest 1.200, 685 MB)`, leaving out what a bench does not report."""
    extra = []
    if result.get("fastest_step_s") is not None:
        extra.append(f"fastest {result['fastest_step_s']:.3f}")
    if result.get("peak_rss_mb") is not None:
        extra.append(f"{result['peak_rss_mb']:.0f} MB")
    return f"{result['median_step_s']:.3f} s" + (f" ({', '.join(extra)})" if extra else "")


def alternate(options):
    """Rounds of (reference, ours), each in a fresh process, and their summary."""
    bench = "prior" if options.case == "prior" else "vqvae"
    # The features `just` builds with (MPI where installed), so the bench binary is the one just built.
    features = os.environ.get("VIDEOGPT_CARGO_FEATURES", "")
    ours_command_base = shlex.split(options.ours or f"cargo bench -q --workspace {features} --bench {bench} --")
    ours_command = list(ours_command_base)
    if options.case != "prior":
        ours_command += ["--case", options.case, str(BATCH), str(options.warmup), str(options.steps)]
    elif (options.warmup, options.steps) != (2, 5):
        fail(f"prior: our bench times 5 steps after 2 warm-ups; --warmup {options.warmup} --steps {options.steps} would differ")
    else:
        ours_command += ["--train-step"]
    pairs = []
    # This CPU's peak rates (f32 FMA, AMX bf16), measured by our bench.
    peak = run_json(ours_command_base + ["--peak"], "the peak measurement") if options.bf16 else None
    started = time.perf_counter()
    for round_index in range(options.rounds):
        reference_command = [sys.executable, __file__, "--videogpt", str(options.videogpt), "step", options.case,
                             "--warmup", str(options.warmup), "--steps", str(options.steps)]
        reference = run_json(reference_command, "the reference")
        ours = our_result(run_json(ours_command, "our bench"))
        ratio = reference["median_step_s"] / ours["median_step_s"]
        pair = {"reference": reference, "ours": ours, "speedup": ratio}
        if options.bf16:
            pair["reference_bf16"] = run_json(reference_command + ["--precision", "bf16"], "the reference (bf16)")
            pair["ours_bf16"] = our_result(run_json(ours_command + ["--precision", "bf16"], "our bench (bf16)"))
        pairs.append(pair)
        done = round_index + 1
        seconds_per_round = (time.perf_counter() - started) / done
        print(
            f"round {done} of {options.rounds}: reference {describe(reference)}, ours {describe(ours)}: "
            f"{ratio:.2f}x ({seconds_per_round:.0f} s per round, about "
            f"{seconds_per_round * (options.rounds - done):.0f} s left)",
            flush=True,
        )
        if options.bf16:
            print(f"  bf16: reference {describe(pair['reference_bf16'])}, ours {describe(pair['ours_bf16'])}", flush=True)
    summary = summarise(options.case, pairs)
    if peak is not None:
        summary["peak"] = peak
        summary.update(fractions_of_peak(pairs, peak))
    print(
        f"{options.case}: reference median {summary['reference_median_s']:.3f} s "
        f"(recorded in docs/performance.md: {summary['recorded_reference_s'] or float('nan'):.3f} s), ours {summary['ours_median_s']:.3f} s; "
        f"speedup {summary['speedup_geometric_mean']:.2f}x (geometric mean; "
        f"{summary['speedup_min']:.2f}-{summary['speedup_max']:.2f}x), "
        f"ours faster in {summary['rounds_ours_faster']} of {options.rounds} rounds"
    )
    if options.bf16:
        print(
            f"{options.case} bf16: reference under autocast {summary['reference_bf16_median_s']:.3f} s "
            f"({summary['reference_bf16_vs_reference_f32']:.2f}x its f32), ours {summary['ours_bf16_median_s']:.3f} s "
            f"on {summary['ours_cpu_path']} ({summary['ours_bf16_vs_ours_f32']:.2f}x our f32); ours bf16 vs the "
            f"reference's f32 {summary['ours_bf16_vs_reference_f32']:.2f}x, vs its faster step "
            f"{summary['ours_bf16_vs_best_reference']:.2f}x"
        )
        peak_line = f"peak on {peak['cores']} cores: f32 FMA {peak.get('f32_fma_gflops') or 0:.0f} GFLOP/s, AMX bf16 {peak.get('amx_bf16_gflops') or 0:.0f} GFLOP/s"
        if "ours_gflops" in summary:
            peak_line += (f"; ours f32 {summary['ours_gflops']:.0f} GFLOP/s "
                          f"({100 * summary['ours_fraction_of_f32_fma_peak']:.0f}% of f32 peak)")
        if "ours_bf16_gflops" in summary:
            peak_line += (f", ours bf16 {summary['ours_bf16_gflops']:.0f} GFLOP/s "
                          f"({100 * summary['ours_bf16_fraction_of_amx_bf16_peak']:.1f}% of AMX peak)")
        print(peak_line)
    write_summary(Path(options.output), summary)
    print(f"wrote {options.output}")


def at_least(lowest):
    """An argparse type: an integer no smaller than `lowest`."""

    def parse(text):
        value = int(text)
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{value}: must be at least {lowest}")
        return value

    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videogpt", type=Path, required=True, help="a clone of wilson1yan/VideoGPT")
    modes = parser.add_subparsers(dest="mode", required=True)
    step = modes.add_parser("step", help="time the reference once; prints a JSON line")
    step.add_argument("case", choices=ALL_CASES)
    step.add_argument("--warmup", type=at_least(0), default=2)
    step.add_argument("--steps", type=at_least(1), default=5)
    step.add_argument("--seed", type=int, default=0)
    step.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                      help="bf16: the forward pass under torch.autocast('cpu', dtype=torch.bfloat16)")
    both = modes.add_parser("alternate", help="alternate reference and ours, round by round")
    both.add_argument("case", choices=ALL_CASES)
    both.add_argument("--rounds", type=at_least(1), default=6)
    both.add_argument("--warmup", type=at_least(0), default=2)
    both.add_argument("--steps", type=at_least(1), default=5)
    both.add_argument(
        "--ours",
        help="command that runs our bench (default: cargo bench ... --bench vqvae --, or --bench prior --);"
        " '--case CASE 2 WARMUP STEPS' (VQ-VAE) or '--train-step' (prior) is appended",
    )
    both.add_argument("--output", default="target/bench/reference.json")
    both.add_argument("--bf16", action="store_true",
                      help="also time the reference under torch.autocast(bfloat16) and ours with --precision bf16")
    options = parser.parse_args(argv)
    check_clone(options.videogpt)
    if options.mode == "step":
        print(json.dumps(time_reference(options.videogpt, options.case, options.warmup, options.steps, options.seed,
                                        options.precision)))
    else:
        alternate(options)


if __name__ == "__main__":
    main()
