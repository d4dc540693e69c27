"""Plot a training run's metrics.jsonl to a PNG: a VQ-VAE run's loss, NMSE and codebook perplexity, or a
prior run's train and test bits/dim and learning rate.

Usage: .venv/bin/python notebooks/plot_metrics.py runs/<run> [out.png]
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    run = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else run / "loss.png"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    if not rows:
        sys.exit(f"{run / 'metrics.jsonl'} has no rows")
    steps = [r["step"] for r in rows]
    if "bits_per_dim" in rows[0]:
        plot_prior(run, rows, steps)
    elif "loss" in rows[0]:
        plot_vqvae(run, rows, steps)
    else:
        sys.exit(f"{run / 'metrics.jsonl'}: neither a VQ-VAE run (loss) nor a prior run (bits_per_dim)")
    plt.gcf().suptitle(run.name)
    plt.gcf().tight_layout()
    plt.gcf().savefig(out, dpi=100)
    print(out)


def plot_vqvae(run, rows, steps) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(steps, [r["loss"] for r in rows], label="loss")
    ax1.plot(steps, [r["nmse"] for r in rows], label="train NMSE")
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(steps, [r["perplexity"] for r in rows], label="perplexity")
    ax2.plot(steps, [r["codes_used"] for r in rows], label="codes used (batch)")
    ax2.set_xlabel("step")
    ax2.legend()
    ax2.grid(alpha=0.3)


def plot_prior(run, rows, steps) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(steps, [r["bits_per_dim"] for r in rows], label="train bits/dim")
    test = [(r["step"], r["test_bits_per_dim"]) for r in rows if r.get("test_bits_per_dim") is not None]
    if test:
        ax1.plot(*zip(*test), marker="o", label="test bits/dim")
    ax1.set_xlabel("step")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(steps, [r["learning_rate"] for r in rows], label="learning rate")
    ax2.set_xlabel("step")
    ax2.legend()
    ax2.grid(alpha=0.3)


if __name__ == "__main__":
    main()
