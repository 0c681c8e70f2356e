"""What ``cryofm curate`` writes (each file atomically):

* ``facts.csv``: ``experiment``, the table's schema fields (``EMPIAR``, ``EMDBResolution``, ...),
  ``SequenceCluster`` and ``Selected`` — what ``cryofm ingest facts=`` and ``cryofm split
  group_key=SequenceCluster`` read;
* ``clusters.csv``: one row per SequenceCluster: size, members, selected members, chain clusters;
* ``chains.csv``: every chain with its length, chain cluster and that cluster's representative;
* ``selection.csv``: every experiment's rank in its cluster, its preference values and the reason;
* ``ingest_table.csv`` (when the table has an ``input`` column): the selected experiments as a
  ``cryofm ingest table=`` file;
* ``summary.md`` / ``summary.html``: one page with the method that ran, the counts and the clusters;
* ``curate.json``: settings, method and counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cryofm import schema
from cryofm.errors import InputError
from cryofm.report.document import Report
from cryofm.utils import atomic

SKIP = ("experiment", "fasta", "model", "sequence", "input", "root", "classes", "SequenceCluster", "Selected")


def facts_table(table: pd.DataFrame, sel: pd.DataFrame, source: str) -> pd.DataFrame:
    """``facts.csv``'s rows: schema fields of the table (values checked), SequenceCluster, Selected."""
    cols = [c for c in table.columns if c in schema.BY_NAME and c not in SKIP]
    out = table[["experiment"] + cols].copy()
    for c in cols:
        for e, v in zip(out["experiment"], out[c], strict=True):
            try:
                schema.coerce(c, v)
            except ValueError as exc:
                raise InputError(source, f"experiment {e}: {exc}") from None
    m = sel.set_index("experiment")
    out["SequenceCluster"] = out["experiment"].map(m["SequenceCluster"])
    out["Selected"] = out["experiment"].map(m["Selected"]).map({True: "true", False: "false"})
    return out


def clusters_table(sel: pd.DataFrame, chains: pd.DataFrame) -> pd.DataFrame:
    """One row per SequenceCluster (largest first)."""
    rows = []
    for cl, g in sel.groupby("SequenceCluster", sort=True):
        g = g.sort_values("Rank")
        cc = sorted(set(chains.loc[chains["experiment"].isin(g["experiment"]), "chain_cluster"]))
        rows.append({"SequenceCluster": cl, "experiments": len(g), "selected": int(g["Selected"].sum()),
                     "members": " ".join(g["experiment"]),
                     "selected_members": " ".join(g.loc[g["Selected"], "experiment"]),
                     "chain_clusters": " ".join(cc)})
    return pd.DataFrame(rows, columns=["SequenceCluster", "experiments", "selected", "members",
                                       "selected_members", "chain_clusters"])


def _csv(path: Path, df: pd.DataFrame) -> None:
    atomic.write_text(path, df.to_csv(index=False))


def write_outputs(out: Path, table: pd.DataFrame, sel: pd.DataFrame, chains: pd.DataFrame,
                  info: dict[str, Any], source: str) -> dict[str, Path]:
    """Write every file of the module docstring; returns their paths by name."""
    facts = facts_table(table, sel, source)  # checked before anything is written
    clusters = clusters_table(sel, chains)
    prefer_cols = [k.lstrip("-") for k in info["prefer"] if k.lstrip("-") in table.columns]
    selection = sel.merge(table[["experiment"] + prefer_cols], on="experiment", how="left")
    paths = {"facts": out / "facts.csv", "clusters": out / "clusters.csv", "chains": out / "chains.csv",
             "selection": out / "selection.csv", "json": out / "curate.json"}
    out.mkdir(parents=True, exist_ok=True)
    _csv(paths["facts"], facts)
    _csv(paths["clusters"], clusters)
    _csv(paths["chains"], chains)
    _csv(paths["selection"], selection)
    if "input" in table.columns:
        keep = [c for c in ("experiment", "input", "root", "classes") if c in table.columns]
        chosen = table.loc[table["experiment"].isin(sel.loc[sel["Selected"], "experiment"]), keep]
        paths["ingest_table"] = out / "ingest_table.csv"
        _csv(paths["ingest_table"], chosen)
    rep = Report("Sequence curation", f"{info['n_experiments']} experiments from {source}")
    rep.heading("Method")
    rep.text(info["method_text"])
    rep.kv({"min_seq_id": info["min_seq_id"], "coverage": info["coverage"], "linkage": info["linkage"],
            "max_per_cluster": info["max_per_cluster"], "prefer": ", ".join(info["prefer"]) or "–",
            "chains clustered": info["n_chains"], "unique sequences": info["n_unique"],
            "chain clusters": info["n_chain_clusters"], "sequence clusters": info["n_clusters"],
            "selected experiments": info["n_selected"]}, caption="settings and counts")
    rep.heading("Clusters")
    rep.table(clusters, caption="SequenceCluster: experiments sharing any chain cluster (largest first)")
    rep.heading("Selection")
    rep.table(selection[["experiment", "SequenceCluster", "Rank", "Selected", *prefer_cols, "Reason"]],
              caption="every choice and its reason")
    rep.write(out, stem="summary")
    paths["summary_html"], paths["summary_md"] = out / "summary.html", out / "summary.md"
    atomic.write_json(paths["json"], info)
    return paths
