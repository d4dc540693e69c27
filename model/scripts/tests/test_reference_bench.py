"""reference_bench.py without torch: its argument checks, how it reads our
benches' JSON, and one alternation with both sides' runs stubbed (the real
reference needs PyTorch and a clone of the official code, which CI lacks)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))
import reference_bench  # noqa: E402


def run_script(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "reference_bench.py"), *args], capture_output=True, text=True
    )


def fake_clone(tmp_path):
    (tmp_path / "videogpt").mkdir(parents=True)
    (tmp_path / "videogpt" / "vqvae.py").write_text("")
    return tmp_path


@pytest.mark.parametrize("mode", ["step", "alternate"])
def test_a_folder_without_the_official_code_is_named(tmp_path, mode):
    done = run_script("--videogpt", str(tmp_path), mode, "reference-64")
    assert done.returncode == 2
    assert f"--videogpt {tmp_path}: no videogpt/vqvae.py there" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    "args, named",
    [(["--rounds", "0"], "--rounds"), (["--steps", "0"], "--steps"), (["--warmup", "-1"], "--warmup")],
)
def test_counts_below_their_least_are_refused(tmp_path, args, named):
    done = run_script("--videogpt", str(fake_clone(tmp_path)), "alternate", "reference-64", *args)
    assert done.returncode == 2
    assert named in done.stderr and "must be at least" in done.stderr


def test_the_prior_keeps_our_benchs_step_counts(tmp_path):
    done = run_script("--videogpt", str(fake_clone(tmp_path)), "alternate", "prior", "--steps", "3")
    assert done.returncode == 2
    assert "our bench times 5 steps after 2 warm-ups" in done.stderr


def test_the_prior_benchs_fields_are_read_under_the_references_names():
    ours = reference_bench.our_result({"case": "train step", "median_s": 4.0, "reference": 1 / 3.56})
    assert ours["median_step_s"] == 4.0
    assert ours["reference_step_s"] == pytest.approx(3.56)
    assert ours["fastest_step_s"] is None and ours["peak_rss_mb"] is None
    vqvae = {"median_step_s": 1.5, "fastest_step_s": 1.4, "peak_rss_mb": 685.0, "reference_step_s": 1.435}
    assert reference_bench.our_result(vqvae) == vqvae
    assert reference_bench.describe(ours) == "4.000 s"
    assert reference_bench.describe(vqvae) == "1.500 s (fastest 1.400, 685 MB)"


def test_alternate_runs_both_sides_in_turn_and_merges_the_summary(tmp_path, monkeypatch, capsys):
    clone = fake_clone(tmp_path / "clone")
    output = tmp_path / "bench" / "reference.json"
    output.parent.mkdir()
    output.write_text(json.dumps({"prior": {"kept": True}}))
    reference_times = iter([2.0, 1.5, 1.2])
    our_times = iter([1.0, 1.5, 1.5])
    calls = []

    def fake_run_json(command, what):
        calls.append((what, command))
        if what == "the reference":
            return {"median_step_s": next(reference_times), "fastest_step_s": 1.0, "peak_rss_mb": 2000.0}
        return {"median_step_s": next(our_times), "fastest_step_s": 0.9, "peak_rss_mb": 680.0,
                "reference_step_s": 1.435}

    monkeypatch.setattr(reference_bench, "run_json", fake_run_json)
    reference_bench.main(["--videogpt", str(clone), "alternate", "reference-240", "--rounds", "3",
                          "--ours", "ours-bench --flag", "--output", str(output)])
    assert [what for what, _ in calls] == ["the reference", "our bench"] * 3
    rounds = [line for line in capsys.readouterr().out.splitlines() if line.startswith("round")]
    assert [line.split(":")[0] for line in rounds] == ["round 1 of 3", "round 2 of 3", "round 3 of 3"]
    assert rounds[-1].endswith("about 0 s left)")
    assert calls[1][1] == ["ours-bench", "--flag", "--case", "reference-240", "2", "2", "5"]
    assert calls[0][1][-6:] == ["step", "reference-240", "--warmup", "2", "--steps", "5"]
    written = json.loads(output.read_text())
    assert written["prior"] == {"kept": True}
    summary = written["reference-240"]
    assert summary["rounds"] == 3 and summary["rounds_ours_faster"] == 1
    assert summary["reference_median_s"] == 1.5 and summary["ours_median_s"] == 1.5
    assert summary["speedup_geometric_mean"] == pytest.approx(math.exp((math.log(2) + math.log(0.8)) / 3))
    assert (summary["speedup_min"], summary["speedup_max"]) == pytest.approx((0.8, 2.0))
    assert summary["recorded_reference_s"] == 1.435
    assert not output.with_suffix(".json.tmp").exists()


def test_bf16_columns_time_four_steps_a_round_and_compare_ours_with_both_references(tmp_path, monkeypatch, capsys):
    clone = fake_clone(tmp_path / "clone")
    output = tmp_path / "reference.json"
    # Per round: reference f32, ours f32, reference bf16, ours bf16.
    times = iter([3.0, 1.5, 2.0, 0.5] * 2)
    calls = []

    def fake_run_json(command, what):
        if what == "the peak measurement":
            assert command == ["ours-bench", "--peak"]
            return {"cores": 2, "f32_fma_gflops": 200.0, "amx_bf16_gflops": 2000.0}
        calls.append((what, command))
        result = {"median_step_s": next(times)}
        result["gflops"] = 80.0 / result["median_step_s"]
        if what.startswith("our bench"):
            result["cpu_path"] = "amx-bf16" if "bf16" in command else "f32"
        return result

    monkeypatch.setattr(reference_bench, "run_json", fake_run_json)
    reference_bench.main(["--videogpt", str(clone), "alternate", "prior", "--rounds", "2", "--bf16",
                          "--ours", "ours-bench", "--output", str(output)])
    assert [what for what, _ in calls] == ["the reference", "our bench", "the reference (bf16)", "our bench (bf16)"] * 2
    assert calls[2][1][-2:] == ["--precision", "bf16"] and calls[3][1] == ["ours-bench", "--train-step", "--precision", "bf16"]
    assert "--precision" not in calls[0][1] and "--precision" not in calls[1][1]
    summary = json.loads(output.read_text())["prior"]
    assert summary["ours_cpu_path"] == "amx-bf16"
    assert summary["reference_bf16_vs_reference_f32"] == pytest.approx(1.5)
    assert summary["ours_bf16_vs_ours_f32"] == pytest.approx(3.0)
    assert summary["ours_bf16_vs_reference_f32"] == pytest.approx(6.0)
    assert summary["ours_bf16_vs_best_reference"] == pytest.approx(4.0)
    assert summary["ours_fraction_of_f32_fma_peak"] == pytest.approx(80 / 1.5 / 200)
    assert summary["ours_bf16_fraction_of_amx_bf16_peak"] == pytest.approx(80 / 0.5 / 2000)
    printed = capsys.readouterr().out
    assert "vs its faster step 4.00x" in printed and "AMX bf16 2000 GFLOP/s" in printed
