import json

import pytest
import yaml

from cryofm.cli import main
from cryofm.errors import InputError
from cryofm.report.sweep import collect, summarize


def _run(d, overrides, metrics):
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / "metrics.json").write_text(json.dumps(metrics))


def test_summary_has_one_row_per_run_with_overrides_and_metrics(tmp_path):
    _run(tmp_path / "0", ["optim.lr=0.001", "experiment=tiny"], {"loss": {"final": 2.5}, "steps": 10})
    _run(tmp_path / "1", ["optim.lr=0.002", "experiment=tiny"], {"loss": {"final": 1.5}, "steps": 10})
    rows = collect(tmp_path)
    assert [(r["optim.lr"], r["loss.final"]) for r in rows] == [("0.001", 2.5), ("0.002", 1.5)]
    summarize(tmp_path, sort_by="loss.final")
    csv = (tmp_path / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("run,") and csv[1].startswith("1,")  # sorted: lowest loss first
    assert "| 1 | 0.002 | tiny | 1.5 | 10 |" in (tmp_path / "summary.md").read_text()


def test_cli_errors_on_empty_sweep(tmp_path, capsys):
    assert main(["summarize", f"sweep={tmp_path}"]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    with pytest.raises(InputError):
        collect(tmp_path / "missing")
