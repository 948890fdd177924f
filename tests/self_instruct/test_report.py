"""`pacos self-instruct report` on a real run against the loopback teacher."""

import json

from test_loop import cli_args

from pacos.cli import main


def test_report_of_a_run_writes_markdown_and_pngs(teacher, tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    assert main(cli_args(teacher, out, 40)) == 0
    assert main(["self-instruct", "report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "report of 40 records" in capsys.readouterr().out
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "kept records: **40**" in md and "| similar |" in md and "leading verbs" in md
    for name in ("lengths", "similarity", "verbs", "discards"):
        assert (tmp_path / "rep" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name}.png)" in md


def test_report_of_a_plain_file_computes_nearest_neighbours(tmp_path, capsys):
    data = tmp_path / "plain.json"
    data.write_text(json.dumps([{"instruction": "Add two numbers.", "input": "1 2", "output": "3"},
                                {"instruction": "Add two numbers together.", "input": "", "output": "4"}]))
    assert main(["self-instruct", "report", str(data)]) == 0
    md = (tmp_path / "plain_report" / "report.md").read_text()
    assert "kept records: **2**" in md and "max 0.857" in md
