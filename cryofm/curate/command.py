"""``cryofm curate``: the thin entry point over :func:`cryofm.curate.run.curate`."""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf

from cryofm.curate.run import curate
from cryofm.errors import InputError


def _list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    return [v for v in str(value).split(",") if v.strip()]


def _num(cfg: DictConfig, key: str, kind: type):
    try:
        return kind(cfg.get(key))
    except (TypeError, ValueError):
        raise InputError(key, f"expected a {kind.__name__}, got {cfg.get(key)!r}") from None


def command(cfg: DictConfig) -> int:
    """Curate, then print the method that ran, the counts and where the outputs are."""
    for key in ("experiments", "out"):
        if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
            raise InputError(None, f"{key}=... is required")
    if cfg.get("root") not in (None, ""):
        from cryofm.utils import checks as c

        c.existing_dir(cfg, "root", "root= folder")
    info = curate(str(cfg.experiments), str(cfg.out), min_seq_id=_num(cfg, "min_seq_id", float),
                  coverage=_num(cfg, "coverage", float), max_per_cluster=_num(cfg, "max_per_cluster", int),
                  prefer=_list(cfg.get("prefer")), method=str(cfg.method), linkage=str(cfg.linkage),
                  polymer=str(cfg.polymer), min_length=_num(cfg, "min_length", int), missing=str(cfg.missing),
                  threads=_num(cfg, "threads", int), max_pairwise=_num(cfg, "max_pairwise", int),
                  mmseqs_args=_list(cfg.get("mmseqs_args")), cascaded=bool(cfg.cascaded),
                  progress=bool(cfg.progress), root=cfg.get("root") or None)
    print(f"clustering: {info['method_text']}")
    print(f"{info['n_experiments']} experiments, {info['n_chains']} chains ({info['n_unique']} unique) -> "
          f"{info['n_chain_clusters']} chain clusters -> {info['n_clusters']} SequenceClusters; "
          f"{info['n_selected']} selected (max_per_cluster={info['max_per_cluster']})")
    if info["without_sequence"]:
        print(f"{len(info['without_sequence'])} experiment(s) without a sequence, each its own cluster")
    o = info["outputs"]
    print(f"facts: {o['facts']}  (cryofm ingest facts=...; cryofm split group_key=SequenceCluster)")
    print(f"summary: {o['summary_html']}")
    return 0
