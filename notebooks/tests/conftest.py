"""Fixtures: a small Moving MNIST split prepared by the real `vgpt-data` binary
from the real MNIST digits that ./setup.sh fetches."""
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "target" / "release" / "vgpt-data"
RAW = REPO / "datasets" / "moving-mnist" / "raw"


@pytest.fixture(scope="session")
def prepared_root(tmp_path_factory):
    if not BINARY.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "videogpt-pipeline", "--bin", "vgpt-data"], cwd=REPO, check=True)
    root = tmp_path_factory.mktemp("datasets")
    subprocess.run(
        [str(BINARY), "prepare", "moving-mnist", "--root", str(root), "--raw", str(RAW),
         "--train-sequences", "64", "--test-sequences", "16", "--videos-per-shard", "20", "--no-progress"],
        check=True,
    )
    return root


VGPT = REPO / "target" / "release" / "vgpt"


@pytest.fixture(scope="session")
def token_tables(prepared_root):
    """Token tables of the small split, encoded by a briefly trained tiny VQ-VAE,
    plus `vgpt-data stats` JSON beside them. Returns (table folder, run folder)."""
    if not VGPT.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "videogpt-model", "--bin", "vgpt"], cwd=REPO, check=True)
    run = prepared_root / "runs" / "vqvae-moving-mnist-tiny"
    subprocess.run(
        [str(VGPT), "train-vqvae", "moving-mnist", "tiny", "--root", str(prepared_root), "--run", str(run),
         "--steps", "2", "--batch-size", "4", "--checkpoint-every", "2", "--no-progress"],
        check=True,
    )
    subprocess.run(
        [str(VGPT), "encode-latents", "moving-mnist", str(run), "--root", str(prepared_root),
         "--rows-per-part", "24", "--no-progress"],
        check=True,
    )
    subprocess.run([str(BINARY), "stats", "moving-mnist", "--root", str(prepared_root)], check=True)
    tables = list((prepared_root / "moving-mnist" / "tokens").iterdir())
    assert len(tables) == 1, tables
    return tables[0], run
