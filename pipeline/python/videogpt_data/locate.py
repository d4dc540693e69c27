"""Where the data is, from any working directory.

The workspace is ``$VIDEOGPT_REPO``, else the nearest folder from the working directory up that has
a ``datasets/`` folder with prepared data, else the checkout this package was installed from. The
data root is ``$VIDEOGPT_DATA`` or ``<workspace>/datasets``; runs are in ``<workspace>/runs``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .tokens import table_manifests

INDEX_GLOBS = ["*/clips/*/index.json", "*/*/clips/*/index.json"]


def _has_data(datasets: Path) -> bool:
    return any(next(datasets.glob(g), None) for g in INDEX_GLOBS)


def repo_root() -> Path:
    if "VIDEOGPT_REPO" in os.environ:
        return Path(os.environ["VIDEOGPT_REPO"]).resolve()
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if _has_data(folder / "datasets"):
            return folder
    here = Path(__file__).resolve()
    if len(here.parents) > 3 and (here.parents[3] / "justfile").is_file():
        return here.parents[3]
    raise FileNotFoundError("cannot find the VideoGPT workspace: set VIDEOGPT_REPO")


def data_root() -> Path:
    if "VIDEOGPT_DATA" in os.environ:
        return Path(os.environ["VIDEOGPT_DATA"]).resolve()
    return repo_root() / "datasets"


def runs_root() -> Path:
    return repo_root() / "runs"


def default_dataset(root: Path | None = None) -> Path:
    """The demo's dataset (``datasets/demo/<dataset>``, written by ``just demo``) when it is
    prepared, else the dataset whose split index was written last."""
    root = Path(root) if root is not None else data_root()
    demo = sorted((root / "demo").glob("*/clips/*/index.json"))
    if demo:
        return demo[0].parents[2]
    indexes = [p for g in INDEX_GLOBS for p in root.glob(g)]
    if not indexes:
        raise FileNotFoundError(f"no prepared dataset under {root} (looked for {' and '.join(INDEX_GLOBS)}): "
                                "run `just demo` or `just prepare <dataset>`")
    return max(indexes, key=lambda p: p.stat().st_mtime).parents[2]


def newest_table(dataset: Path) -> Path:
    """The token table folder of ``dataset`` whose manifest was written last."""
    tokens = Path(dataset) / "tokens"
    found = [(m.stat().st_mtime, t) for t in tokens.glob("*") if t.is_dir() for m in table_manifests(t)]
    if not found:
        raise FileNotFoundError(f"no complete token table under {tokens}: run `just encode-latents {Path(dataset).name}`")
    return max(found)[1]


def default_prior_run(runs: Path | None = None) -> Path:
    """``runs/demo/prior`` when the demo trained it, else the prior run written last (a folder with
    ``config.json`` whose config has a ``tokens`` entry)."""
    runs = Path(runs) if runs is not None else runs_root()
    if (runs / "demo" / "prior" / "metrics.jsonl").is_file():
        return runs / "demo" / "prior"
    priors = [p.parent for p in runs.glob("**/metrics.jsonl")
              if (p.parent / "config.json").is_file() and "tokens" in json.loads((p.parent / "config.json").read_text())]
    if not priors:
        raise FileNotFoundError(f"no prior run under {runs}: run `just demo` or `just train-prior <dataset>`")
    return max(priors, key=lambda p: (p / "metrics.jsonl").stat().st_mtime)


def binary(name: str) -> Path | None:
    """A workspace binary (``vgpt``, ``vgpt-data``): the release build of the checkout this package
    lives in, else the workspace's, else one on ``PATH``."""
    import shutil

    here = Path(__file__).resolve()
    candidates = [here.parents[3] / "target" / "release" / name] if len(here.parents) > 3 else []
    try:
        candidates.append(repo_root() / "target" / "release" / name)
    except FileNotFoundError:
        pass
    for c in candidates:
        if c.is_file():
            return c
    found = shutil.which(name)
    return Path(found) if found else None
