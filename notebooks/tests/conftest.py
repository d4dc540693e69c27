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
