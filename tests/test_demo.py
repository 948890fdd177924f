"""`pacos demo --quick`: the whole offline loop writes its report, test set, model and chat hint."""

import json

from .conftest import run_pacos


def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = run_pacos("demo", "--quick", "--out", out, check=True)
    report = json.loads((out / "report.json").read_text())
    assert {"base_accuracy", "tuned_accuracy", "n_test", "train_seconds"} <= set(report)
    assert 0.0 <= report["base_accuracy"] <= 1.0 and 0.0 <= report["tuned_accuracy"] <= 1.0
    test = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert len(test) == report["n_test"] and all(r["output"] and r["task"] for r in test)
    train_keys = {(r["instruction"], r["input"]) for r in map(json.loads, (out / "train.jsonl").read_text().splitlines())}
    assert not train_keys & {(r["instruction"], r["input"]) for r in test}  # held out for real
    assert (out / "model" / "config.json").is_file() and (out / "model" / "loss_curve.png").is_file()
    assert "tuned accuracy" in (out / "report.md").read_text()
    assert f"pacos ask {out / 'model'}" in proc.stdout
