"""Sample quality of a trained prior by FVD, beside its two reference points.

    just sample-quality runs/quality/prior [clips, 256] [report] [recipe]
    python model/scripts/sample_quality.py --prior runs/quality/prior --clips 256 --out report.json

Draws --clips samples from the prior (`vgpt sample`), and as many clips of the
unigram floor: tokens drawn independently from the code frequencies of the
prior's train tokens, decoded by the same VQ-VAE (`vgpt sample --unigram`).
One `vgpt fvd` run then scores, against --clips clips of the test split:
- FVD of the samples,
- R-FVD: the VQ-VAE's reconstructions of those test clips (what a perfect
  prior would reach),
- FVD of the unigram floor (what a prior that learned nothing but code
  frequencies reaches).
The report holds the three numbers, where the samples fall between the two
(`gap_ratio` = (FVD - R-FVD) / (FVD unigram - R-FVD): 0 is a perfect prior,
1 no better than the floor), the runs' test NMSE and bits/dim, and every
command, with the recipe's own when --recipe names a justfile recipe.
"""

import argparse
import functools
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import logged_run


# Each step of the report: echoed, logged, and the report stopped if it fails.
run = functools.partial(logged_run.run, script="sample_quality.py")


def recipe_commands(recipe):
    """The commands `just <recipe>` runs, as `just --dry-run` prints them."""
    done = subprocess.run(["just", "--dry-run", recipe], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sample_quality.py: `just --dry-run {recipe}` failed: {done.stderr.strip()}")
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return [line for line in lines if not line.startswith(("#", "cargo build", "echo "))]


def last_metrics(run_dir, key):
    """The newest value of `key` in a run's metrics.jsonl, or None."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    for line in reversed(path.read_text().strip().splitlines()):
        value = json.loads(line).get(key)
        if value is not None:
            return value
    return None


def assemble(fvd_report, clips, prior_run, vqvae_run, commands, seconds, recipe=None, sample_flags=()):
    """The report from `vgpt fvd --out`'s JSON and the runs' own files."""
    fvd = fvd_report["fvd"]["mean"]
    r_fvd = fvd_report["r_fvd"]["mean"]
    unigram = fvd_report["fvd_baseline"]["mean"]
    gap = (fvd - r_fvd) / (unigram - r_fvd) if unigram != r_fvd else None
    eval_path = Path(vqvae_run) / "eval-test.json"
    nmse = json.loads(eval_path.read_text())["nmse"] if eval_path.is_file() else None
    return {
        "fvd_samples": fvd,
        "r_fvd": r_fvd,
        "fvd_unigram": unigram,
        "fvd_star": fvd_report.get("fvd_star", {}).get("mean"),
        "gap_ratio": gap,
        "within_a_quarter": gap is not None and gap <= 0.25,
        "clips": clips,
        "clip_shape": fvd_report["clip_shape"],
        "vqvae_test_nmse": nmse,
        "prior_test_bits_per_dim": last_metrics(prior_run, "test_bits_per_dim"),
        "prior": str(prior_run),
        "vqvae": str(vqvae_run),
        "sampling": list(sample_flags) or ["temperature 1, no truncation"],
        "recipe": recipe,
        "commands": commands,
        "fvd_seconds": round(fvd_report["seconds"]),
        "seconds": round(seconds),
    }


def table(report):
    """A small text table of the three numbers."""
    rows = [
        ("R-FVD (VQ-VAE reconstructions: a perfect prior)", report["r_fvd"]),
        ("FVD of the samples", report["fvd_samples"]),
        ("FVD of the unigram floor", report["fvd_unigram"]),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value:8.1f}" for name, value in rows]
    gap = report["gap_ratio"]
    if report["fvd_unigram"] <= report["r_fvd"]:
        lines.append("the unigram floor is not above R-FVD: at this clip count the three cannot be told apart "
                     "(FVD fits 400-dimensional Gaussians; the paper uses 256 clips)")
    elif gap is not None:
        lines.append(f"samples cover {100 * (1 - gap):.0f}% of the way from the floor to R-FVD "
                     f"(gap ratio {gap:.3f}; the aim is at most 0.25)")
    lines.append(f"{report['clips']} clips per set, clips {report['clip_shape']} (T, H, W, C)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", type=Path, required=True, help="prior run folder")
    parser.add_argument("--clips", type=int, default=256, help="clips per set (the paper: 256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples, the floor and the FVD draws")
    parser.add_argument("--sample-flags", default="", help="extra `vgpt sample` flags, e.g. '--top-k 32'")
    parser.add_argument("--recipe", help="the justfile recipe that trained the runs (its commands go in the report)")
    parser.add_argument("--out", type=Path, help="report JSON (default <prior>/quality/report.json)")
    parser.add_argument("--bin", type=Path, default=Path("target/release"), help="folder of vgpt")
    options = parser.parse_args(argv)
    vgpt = str(options.bin / "vgpt")
    if not (options.prior / "config.json").is_file():
        sys.exit(f"sample_quality.py: {options.prior} is not a prior run (no config.json); give a `vgpt train-prior` run folder")
    config = json.loads((options.prior / "config.json").read_text())
    if "tokens" not in config:
        sys.exit(f"sample_quality.py: {options.prior} is a VQ-VAE run, not a prior run; give a `vgpt train-prior` run folder")
    vqvae_checkpoint = Path(config["tokens"]["checkpoint"])
    vqvae_run = vqvae_checkpoint.parent.parent
    table_dir = Path(config["train"]["table"])
    real = table_dir.parent.parent / "clips" / "test"
    work = options.prior / "quality"
    work.mkdir(parents=True, exist_ok=True)
    out = options.out or work / "report.json"
    sample_flags = shlex.split(options.sample_flags)
    clips, seed = str(options.clips), str(options.seed)
    started = time.time()
    commands = recipe_commands(options.recipe) if options.recipe else []
    with open(work / "report.log", "a") as log:
        def step(command):
            commands.append(shlex.join(command))
            run(command, log)

        step([vgpt, "sample", str(options.prior), "--batch", clips, "--seed", seed, *sample_flags,
              "--out", str(work / "samples"), "--no-mp4", "--no-progress"])
        step([vgpt, "sample", str(options.prior), "--unigram", "--batch", clips, "--seed", seed,
              "--out", str(work / "unigram"), "--no-mp4", "--no-progress"])
        fvd_json = work / "fvd.json"
        step([vgpt, "fvd", str(real), str(work / "samples"), "--baseline", str(work / "unigram"),
              "--vqvae", str(vqvae_checkpoint), "--clips", clips, "--seed", seed, "--out", str(fvd_json),
              "--no-progress"])
    report = assemble(json.loads(fvd_json.read_text()), options.clips, options.prior, vqvae_run, commands,
                      time.time() - started, options.recipe, sample_flags)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
