"""sample_quality.py's bookkeeping with the binaries' runs stubbed (the real
samples and I3D passes take many minutes; `just sample-quality` does them,
and model/tests/fvd.rs and prior_training.rs test `--baseline` and
`--unigram` themselves): which commands it runs on which folders, and the
report it assembles from `vgpt fvd`'s JSON and the runs' files."""

import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))
import sample_quality  # noqa: E402


def test_the_report_places_the_samples_between_r_fvd_and_the_unigram_floor(tmp_path, monkeypatch, capsys):
    root = tmp_path / "demo"
    vqvae = tmp_path / "runs/vqvae"
    checkpoint = vqvae / "checkpoints/step-00000010"
    checkpoint.mkdir(parents=True)
    (vqvae / "eval-test.json").write_text(json.dumps({"nmse": 0.05}))
    prior = tmp_path / "runs/prior"
    prior.mkdir(parents=True)
    table = root / "moving-mnist/tokens/vqvae-step-00000010"
    (prior / "config.json").write_text(json.dumps({
        "tokens": {"checkpoint": str(checkpoint)},
        "train": {"table": str(table)},
    }))
    (prior / "metrics.jsonl").write_text(
        json.dumps({"step": 5, "test_bits_per_dim": 2.0}) + "\n" + json.dumps({"step": 6}) + "\n")
    commands = []

    def fake_run(command, log):
        commands.append(command)
        if command[1] == "fvd":
            out = Path(command[command.index("--out") + 1])
            out.write_text(json.dumps({
                "fvd": {"mean": 150.0}, "r_fvd": {"mean": 50.0}, "fvd_baseline": {"mean": 850.0},
                "fvd_star": {"mean": 120.0}, "clip_shape": [16, 64, 64, 1], "seconds": 12.4,
            }))

    monkeypatch.setattr(sample_quality, "run", fake_run)
    monkeypatch.setattr(sample_quality, "recipe_commands", lambda recipe: [f"just-{recipe}-line"])
    out = tmp_path / "quality.json"
    sample_quality.main(["--prior", str(prior), "--clips", "64", "--seed", "3", "--sample-flags=--top-k 32",
                         "--recipe", "quality", "--out", str(out), "--bin", "bin"])
    assert [c[1] for c in commands] == ["sample", "sample", "fvd"]
    samples, unigram, fvd = commands
    assert "--unigram" not in samples and samples[samples.index("--top-k") + 1] == "32"
    assert "--unigram" in unigram and "--top-k" not in unigram
    assert all(c[c.index("--batch") + 1] == "64" and c[c.index("--seed") + 1] == "3" for c in (samples, unigram))
    # Scored against the table's own test clips, with the table's VQ-VAE.
    assert fvd[2] == str(root / "moving-mnist/clips/test")
    assert fvd[fvd.index("--vqvae") + 1] == str(checkpoint)
    assert fvd[3] == samples[samples.index("--out") + 1]
    assert fvd[fvd.index("--baseline") + 1] == unigram[unigram.index("--out") + 1]
    assert fvd[fvd.index("--clips") + 1] == "64"

    report = json.loads(out.read_text())
    assert (report["fvd_samples"], report["r_fvd"], report["fvd_unigram"]) == (150.0, 50.0, 850.0)
    assert report["gap_ratio"] == pytest.approx(100.0 / 800.0)
    assert report["within_a_quarter"] is True
    assert report["clips"] == 64 and report["vqvae_test_nmse"] == 0.05
    assert report["prior_test_bits_per_dim"] == 2.0
    assert report["commands"][0] == "just-quality-line" and len(report["commands"]) == 4
    assert report["recipe"] == "quality" and report["sampling"] == ["--top-k", "32"]
    printed = capsys.readouterr().out
    assert "R-FVD" in printed and "88% of the way" in printed


def test_samples_no_better_than_the_floor_are_not_within_a_quarter():
    fvd = {"fvd": {"mean": 700.0}, "r_fvd": {"mean": 100.0}, "fvd_baseline": {"mean": 900.0},
           "clip_shape": [16, 64, 64, 1], "seconds": 1}
    report = sample_quality.assemble(fvd, 8, Path("/nonexistent/prior"), Path("/nonexistent/vqvae"), [], 1.0)
    assert report["gap_ratio"] == pytest.approx(0.75)
    assert report["within_a_quarter"] is False
    assert report["vqvae_test_nmse"] is None and report["prior_test_bits_per_dim"] is None


def test_a_floor_below_r_fvd_is_reported_as_too_few_clips():
    fvd = {"fvd": {"mean": 761.0}, "r_fvd": {"mean": 1337.3}, "fvd_baseline": {"mean": 1204.6},
           "clip_shape": [16, 64, 64, 1], "seconds": 1}
    report = sample_quality.assemble(fvd, 16, Path("/nonexistent/prior"), Path("/nonexistent/vqvae"), [], 1.0)
    assert report["within_a_quarter"] is False
    printed = sample_quality.table(report)
    assert "cannot be told apart" in printed and "of the way" not in printed
