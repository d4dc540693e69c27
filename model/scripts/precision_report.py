"""Mixed precision's quality check and speed summary: docs/results/precision.json.

Trains the demo's VQ-VAE (Moving MNIST, `just demo`'s settings) for --steps
steps with `--precision f32` and with `--precision bf16`, for each of
--vqvae-seeds (0 and 1), evaluates them on the test split (NMSE, compared as
means over the seeds), encodes the train and test clips once with the
f32 VQ-VAE, trains the demo's prior on those tokens for --steps steps in each
precision and reads their test bits/dim. Then it adds the ratios of the last
`just bench-reference CLONE CASE ROUNDS --bf16` runs (target/bench/reference.json)
where present, and writes the report.

    just precision-report            # 2,000 steps each
    python model/scripts/precision_report.py --steps 2000

Runs go under runs/precision/; a rerun continues them (`--resume`). Needs the
demo's prepared data (`just demo` prepares it; this script does too if it is
missing).
"""

import argparse
import functools
import json
import shlex
import time
from pathlib import Path

import logged_run

PRECISIONS = ("f32", "bf16")
# The demo's settings (justfile: demo).
VQVAE_FLAGS = ["--batch-size", "4", "--lr", "3e-3", "--lr-schedule", "cosine", "--warmup", "50"]
PRIOR_FLAGS = ["--batch-size", "8", "--lr", "2e-3", "--warmup", "20", "--eval-clips", "500"]
# Bench cases: our bf16 step against the official f32 step, per case.
BENCH_FIELDS = {
    "prior": "prior_step_vs_official_f32",
    "reference-64": "vqvae64_step_vs_official_f32",
    "reference-240": "vqvae240_step_vs_official_f32",
}


# Each step of the report: echoed, logged, and the report stopped if it fails.
run = functools.partial(logged_run.run, script="precision_report.py")


def last_metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().strip().splitlines()
    return json.loads(lines[-1])


def bench_ratios(path):
    """Our bf16 steps against the official code's, from `reference_bench.py alternate --bf16`."""
    if not path.is_file():
        return {}, {}
    bench = json.loads(path.read_text())
    ratios, details = {}, {}
    for case, field in BENCH_FIELDS.items():
        summary = bench.get(case, {})
        if "ours_bf16_vs_reference_f32" not in summary:
            continue
        ratios[field] = summary["ours_bf16_vs_reference_f32"]
        details[case] = {
            key: summary.get(key)
            for key in (
                "rounds", "reference_median_s", "reference_bf16_median_s", "ours_median_s", "ours_bf16_median_s",
                "ours_bf16_vs_reference_f32", "ours_bf16_vs_best_reference", "ours_bf16_vs_ours_f32",
                "ours_cpu_path", "peak", "ours_gflops", "ours_bf16_gflops",
                "ours_fraction_of_f32_fma_peak", "ours_bf16_fraction_of_amx_bf16_peak",
            )
            if summary.get(key) is not None
        }
    return ratios, details


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--vqvae-seeds", type=lambda text: [int(v) for v in text.split(",")], default=[0, 1],
                        help="seeds of the VQ-VAE runs (each trained in both precisions); default 0,1")
    parser.add_argument("--root", type=Path, default=Path("datasets/demo"))
    parser.add_argument("--runs", type=Path, default=Path("runs/precision"))
    parser.add_argument("--bench", type=Path, default=Path("target/bench/reference.json"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/precision.json"))
    parser.add_argument("--bin", type=Path, default=Path("target/release"), help="folder of vgpt and vgpt-data")
    options = parser.parse_args(argv)
    vgpt, data = str(options.bin / "vgpt"), str(options.bin / "vgpt-data")
    options.runs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    commands = []
    with open(options.runs / "report.log", "a") as log:
        def step(command):
            commands.append(shlex.join(command))
            run(command, log)

        root = str(options.root)
        if not (options.root / "moving-mnist" / "clips" / "train" / "index.json").is_file():
            step([data, "prepare", "moving-mnist", "--root", root, "--raw", "datasets/moving-mnist/raw", "--seq-len", "8",
                  "--train-sequences", "4000", "--test-sequences", "500"])
        steps = str(options.steps)
        # Per precision, the test NMSE of each seed: one run's rounding
        # changes its whole trajectory, so seeds show how far apart two
        # runs of the same precision already land.
        nmse = {precision: [] for precision in PRECISIONS}
        for seed in options.vqvae_seeds:
            for precision in PRECISIONS:
                run_dir = options.runs / (f"vqvae-{precision}" + (f"-seed{seed}" if seed else ""))
                step([vgpt, "train-vqvae", "moving-mnist", "tiny", "--root", root, "--run", str(run_dir), "--resume",
                      "--steps", steps, *VQVAE_FLAGS, "--checkpoint-every", steps, "--seed", str(seed),
                      "--precision", precision, "--no-progress"])
                # Both evaluated in f32: the comparison is of the trained weights.
                step([vgpt, "eval-vqvae", str(run_dir), "--no-progress"])
                nmse[precision].append(json.loads((run_dir / "eval-test.json").read_text())["nmse"])
        mean_nmse = {precision: sum(values) / len(values) for precision, values in nmse.items()}
        table = f"vqvae-f32-step-{options.steps:08d}"
        if not (options.root / "moving-mnist" / "tokens" / table).is_dir():
            step([vgpt, "encode-latents", "moving-mnist", str(options.runs / "vqvae-f32"), "--root", root, "--no-progress"])
        bits = {}
        for precision in PRECISIONS:
            run_dir = options.runs / f"prior-{precision}"
            step([vgpt, "train-prior", "moving-mnist", "--root", root, "--table", table, "--run", str(run_dir), "--resume",
                  "--steps", steps, *PRIOR_FLAGS, "--eval-every", steps, "--checkpoint-every", steps,
                  "--precision", precision, "--no-progress"])
            bits[precision] = last_metrics(run_dir)["test_bits_per_dim"]
    ratios, bench = bench_ratios(options.bench)
    report = {
        "steps": options.steps,
        "vqvae_seeds": options.vqvae_seeds,
        "vqvae_test_nmse_f32": mean_nmse["f32"],
        "vqvae_test_nmse_bf16": mean_nmse["bf16"],
        "vqvae_nmse_relative_difference": abs(mean_nmse["bf16"] - mean_nmse["f32"]) / mean_nmse["f32"],
        "vqvae_test_nmse_f32_per_seed": nmse["f32"],
        "vqvae_test_nmse_bf16_per_seed": nmse["bf16"],
        "prior_test_bits_f32": bits["f32"],
        "prior_test_bits_bf16": bits["bf16"],
        "prior_bits_difference": abs(bits["bf16"] - bits["f32"]),
        **ratios,
        "bench": bench,
        "commands": commands + ([f"just bench-reference CLONE {case} ROUNDS --bf16" for case in bench] if bench else []),
        "seconds": round(time.time() - started),
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"VQ-VAE test NMSE, mean of seeds {options.vqvae_seeds}: f32 {mean_nmse['f32']:.4f} "
          f"({', '.join(f'{v:.4f}' for v in nmse['f32'])}), bf16 {mean_nmse['bf16']:.4f} "
          f"({', '.join(f'{v:.4f}' for v in nmse['bf16'])}): "
          f"{100 * report['vqvae_nmse_relative_difference']:.1f}% apart; the issue allows 5%")
    print(f"prior test bits/dim: f32 {bits['f32']:.4f}, bf16 {bits['bf16']:.4f} "
          f"({report['prior_bits_difference']:.4f} apart; the issue allows 0.02)")
    for field, value in ratios.items():
        print(f"{field}: {value:.2f}x")
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
