"""Fixtures: a small workspace laid out as `just demo` leaves it (`datasets/demo/moving-mnist`,
`runs/demo/{vqvae,prior,samples}`), made by the real binaries from the real MNIST digits that
./setup.sh fetches."""
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "target" / "release" / "vgpt-data"
VGPT = REPO / "target" / "release" / "vgpt"
RAW = REPO / "datasets" / "moving-mnist" / "raw"


def build(package, binary):
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "-p", package, "--bin", binary.name], cwd=REPO, check=True)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A folder with `datasets/` and `runs/`, as the repository after `just demo`."""
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
def prepared_root(workspace):
    build("videogpt-pipeline", BINARY)
    root = workspace / "datasets" / "demo"
    subprocess.run(
        [str(BINARY), "prepare", "moving-mnist", "--root", str(root), "--raw", str(RAW),
         "--train-sequences", "64", "--test-sequences", "16", "--videos-per-shard", "20", "--no-progress"],
        check=True,
    )
    return root


@pytest.fixture(scope="session")
def token_tables(prepared_root, workspace):
    """Token tables of the small split, encoded by a briefly trained tiny VQ-VAE,
    plus `vgpt-data stats` JSON beside them. Returns (table folder, run folder)."""
    build("videogpt-model", VGPT)
    run = workspace / "runs" / "demo" / "vqvae"
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
    subprocess.run([str(BINARY), "stats", "moving-mnist", "--root", str(prepared_root)], check=True, capture_output=True)
    tables = list((prepared_root / "moving-mnist" / "tokens").iterdir())
    assert len(tables) == 1, tables
    return tables[0], run


@pytest.fixture(scope="session")
def prior_run(token_tables, prepared_root, workspace):
    """A prior trained briefly on the tables, and 2 samples from it (runs/demo/{prior,samples})."""
    run = workspace / "runs" / "demo" / "prior"
    subprocess.run(
        [str(VGPT), "train-prior", "moving-mnist", "tiny", "--root", str(prepared_root), "--run", str(run),
         "--steps", "4", "--batch-size", "4", "--eval-every", "2", "--eval-clips", "8", "--no-progress"],
        check=True, capture_output=True,
    )
    subprocess.run(
        [str(VGPT), "sample", str(run), "--batch", "2", "--out", str(workspace / "runs" / "demo" / "samples"),
         "--no-mp4", "--no-progress"],
        check=True, capture_output=True,
    )
    return run
