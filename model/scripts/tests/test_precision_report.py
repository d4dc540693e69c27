"""precision_report.py's bookkeeping with the binaries' runs stubbed (the real
runs train for many minutes; `just precision-report` does them): which
commands it runs in which order, and the report it assembles from the runs'
files and the bench summary."""

import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))
import precision_report  # noqa: E402


def test_the_report_compares_both_precisions_and_carries_the_bench_ratios(tmp_path, monkeypatch):
    root, runs = tmp_path / "demo", tmp_path / "runs"
    (root / "moving-mnist/clips/train").mkdir(parents=True)
    (root / "moving-mnist/clips/train/index.json").write_text("{}")
    bench = tmp_path / "reference.json"
    bench.write_text(json.dumps({
        "prior": {"rounds": 2, "ours_bf16_vs_reference_f32": 4.5, "ours_bf16_vs_best_reference": 3.1},
        "reference-64": {"rounds": 2, "speedup_geometric_mean": 1.4},  # an f32-only run: no bf16 ratio
    }))
    nmse = {"f32": 0.20, "bf16": 0.204}
    bits = {"f32": 2.60, "bf16": 2.61}
    commands = []

    def fake_run(command, log):
        commands.append(command)
        if command[1] == "eval-vqvae":
            precision = Path(command[2]).name.split("-")[1]
            seed = 1 if Path(command[2]).name.endswith("seed1") else 0
            (Path(command[2]) / "eval-test.json").write_text(json.dumps({"nmse": nmse[precision] + 0.01 * seed}))
        if command[1] in ("train-vqvae", "train-prior"):
            run_dir = Path(command[command.index("--run") + 1])
            run_dir.mkdir(parents=True, exist_ok=True)
            precision = command[command.index("--precision") + 1]
            line = {"step": 10, "test_bits_per_dim": bits[precision]} if command[1] == "train-prior" else {"step": 10}
            (run_dir / "metrics.jsonl").write_text(json.dumps(line) + "\n")

    monkeypatch.setattr(precision_report, "run", fake_run)
    out = tmp_path / "precision.json"
    precision_report.main(["--steps", "10", "--root", str(root), "--runs", str(runs), "--bench", str(bench),
                           "--out", str(out), "--bin", "bin"])
    verbs = [c[1] for c in commands]
    assert verbs == ["train-vqvae", "eval-vqvae"] * 4 + ["encode-latents", "train-prior", "train-prior"]
    assert [c[c.index("--precision") + 1] for c in commands if "--precision" in c] == ["f32", "bf16"] * 3
    assert [c[c.index("--seed") + 1] for c in commands if "--seed" in c] == ["0", "0", "1", "1"]
    assert [Path(c[c.index("--run") + 1]).name for c in commands if c[1] == "train-vqvae"] == [
        "vqvae-f32", "vqvae-bf16", "vqvae-f32-seed1", "vqvae-bf16-seed1"]
    prior = [c for c in commands if c[1] == "train-prior"]
    assert all(c[c.index("--table") + 1] == "vqvae-f32-step-00000010" for c in prior)
    report = json.loads(out.read_text())
    assert report["vqvae_test_nmse_f32_per_seed"] == pytest.approx([0.20, 0.21])
    assert report["vqvae_test_nmse_bf16_per_seed"] == pytest.approx([0.204, 0.214])
    assert abs(report["vqvae_test_nmse_f32"] - 0.205) < 1e-9 and abs(report["vqvae_test_nmse_bf16"] - 0.209) < 1e-9
    assert abs(report["vqvae_nmse_relative_difference"] - 0.004 / 0.205) < 1e-9
    assert report["prior_test_bits_f32"] == 2.60 and report["prior_test_bits_bf16"] == 2.61
    assert report["prior_step_vs_official_f32"] == 4.5
    assert "vqvae64_step_vs_official_f32" not in report
    assert len(report["commands"]) == len(commands) + 1 and report["commands"][0].startswith("bin/vgpt train-vqvae")
