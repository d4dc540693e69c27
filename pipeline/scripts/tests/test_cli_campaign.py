"""A sample of the bad-input campaign: a few mutants of every input format
and a slice of the hostile arguments through the real binaries, with no
panic, abort, hang, escape or long error line."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "cli_campaign.py"
spec = importlib.util.spec_from_file_location("cli_campaign", SCRIPT)
campaign = importlib.util.module_from_spec(spec)
spec.loader.exec_module(campaign)


def test_a_sample_of_every_format_fails_cleanly(tmp_path):
    out = tmp_path / "outcomes.json"
    status = campaign.main(["--per-format", "4", "--seed", "7", "--timeout", "60",
                            "--work", str(tmp_path / "work"), "--json", str(out)])
    results = json.loads(out.read_text())
    bad = [r for r in results if r["outcome"] in campaign.BAD_OUTCOMES]
    assert status == 0 and not bad, bad
    assert {r["format"] for r in results} == set(campaign.FORMATS)
    # Damage is noticed: most mutants of the checked formats end in an error or a reject.
    for fmt in ["bair", "clips-parquet", "token-table"]:
        rows = [r for r in results if r["format"] == fmt]
        assert sum(r["outcome"] in ("error", "rejected") for r in rows) >= len(rows) // 2, rows


def test_mutations_are_seeded():
    import random
    a = campaign.mutate_bytes(bytes(range(256)) * 8, random.Random("x"))
    b = campaign.mutate_bytes(bytes(range(256)) * 8, random.Random("x"))
    assert a == b
