"""precision_report.py's bookkeeping with the binaries' runs stubbed (the real
runs train for many minutes; `just precision-report` does them): which
commands it runs in which order, and the report it assembles from the runs'
files and the bench summary."""

import json
import sys
from pathlib import Path

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
            (Path(command[2]) / "eval-test.json").write_text(json.dumps({"nmse": nmse[precision]}))
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
    assert verbs == ["train-vqvae", "eval-vqvae", "train-vqvae", "eval-vqvae", "encode-latents", "train-prior", "train-prior"]
    assert [c[c.index("--precision") + 1] for c in commands if "--precision" in c] == ["f32", "bf16", "f32", "bf16"]
    assert all("--seed" not in c for c in commands)  # one default seed for both
    prior = [c for c in commands if c[1] == "train-prior"]
    assert all(c[c.index("--table") + 1] == "vqvae-f32-step-00000010" for c in prior)
    report = json.loads(out.read_text())
    assert report["vqvae_test_nmse_f32"] == 0.20 and report["vqvae_test_nmse_bf16"] == 0.204
    assert abs(report["vqvae_nmse_relative_difference"] - 0.02) < 1e-9
    assert report["prior_test_bits_f32"] == 2.60 and report["prior_test_bits_bf16"] == 2.61
    assert report["prior_step_vs_official_f32"] == 4.5
    assert "vqvae64_step_vs_official_f32" not in report
    assert len(report["commands"]) == len(commands) + 1 and report["commands"][0].startswith("bin/vgpt train-vqvae")
