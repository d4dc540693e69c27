"""Plot a training run's metrics.jsonl (loss and NMSE, codebook perplexity) to a PNG.

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
    fig.suptitle(run.name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main()
