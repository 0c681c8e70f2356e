"""Linear probes on frozen features of a checkpoint (cryoPANDA's evaluation).

    python eval/probe.py checkpoint=<run dir or backbone.safetensors> data=<dataset dir> out=<dir>

Writes ``out/report.html``, ``out/report.md`` and ``out/metrics.json``; see ``configs/probe/probe.yaml``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from cryofm.errors import InputError  # noqa: E402
from cryofm.probe.inputs import check_inputs  # noqa: E402


@hydra.main(config_path="../configs/probe", config_name="probe", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        check_inputs(cfg)  # fails fast, before the heavy imports
        from cryofm.probe.run import run_probe

        run_probe(cfg)
    except InputError as exc:
        print(f"eval/probe.py: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
