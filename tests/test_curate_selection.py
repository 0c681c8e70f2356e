"""The selection rule: prefer columns best first, '-' for larger-is-better, missing last, ties by id."""

from __future__ import annotations

import pandas as pd
import pytest

from cryofm.curate.selection import parse_prefer, select
from cryofm.errors import InputError


@pytest.fixture
def table():
    return pd.DataFrame({"experiment": ["K0", "K1", "K2", "K3", "K4", "K5", "X"],
                         "EMDBResolution": ["3.1", "2.5", "", "2.5", "4.0", "2.9", "10"],
                         "Particles": ["50000", "100000", "1000", "200000", "900000", "10", "5"],
                         "Lab": ["b", "a", "c", "a", "", "b", "z"]})


def test_resolution_ascending_then_particles_descending(table):
    clusters = {e: "SC1" for e in table["experiment"]} | {"X": "SC2"}
    keys = parse_prefer(["EMDBResolution", "-Particles"], list(table.columns))
    assert [str(k) for k in keys] == ["EMDBResolution ascending", "Particles descending"]
    sel = select(table, clusters, keys, max_per_cluster=4).set_index("experiment")
    # 2.5 (200k) < 2.5 (100k) < 2.9 < 3.1 < 4.0 < missing resolution
    assert sel.loc[["K3", "K1", "K5", "K0", "K4", "K2"], "Rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert sel.loc[["K3", "K1", "K5", "K0"], "Selected"].all() and not sel.loc[["K4", "K2"], "Selected"].any()
    assert sel.at["X", "Rank"] == 1 and sel.at["X", "Selected"]
    assert sel.at["K3", "Reason"] == ("selected: rank 1 of 6 in SC1 by EMDBResolution ascending, Particles "
                                      "descending (EMDBResolution=2.5; Particles=200000), within "
                                      "max_per_cluster=4")
    assert sel.at["K2", "Reason"].startswith("not selected: rank 6 of 6") and "EMDBResolution=–" in \
        sel.at["K2", "Reason"]
    assert sel.at["X", "Reason"] == "selected: the only member of SC2"


def test_numbers_sort_as_numbers_text_as_text_and_ties_by_id(table):
    clusters = {e: "SC1" for e in table["experiment"]}
    # "10" is the largest resolution as a number (as text it would sort before "2.5")
    sel = select(table, clusters, parse_prefer(["-EMDBResolution"], list(table.columns)), 1)
    assert sel.loc[sel["Rank"] == 1, "experiment"].tolist() == ["X"]
    # text column: a < b < c < z, missing last; ties (K1, K3 both "a") by experiment id
    sel = select(table, clusters, parse_prefer(["Lab"], list(table.columns)), 2).set_index("experiment")
    assert sel.sort_values("Rank").index.tolist() == ["K1", "K3", "K0", "K5", "K2", "X", "K4"]
    # no prefer= columns: the experiment id decides
    sel = select(table, clusters, [], 3).set_index("experiment")
    assert sel.sort_values("Rank").index.tolist()[:3] == ["K0", "K1", "K2"]


def test_bad_prefer_and_max_per_cluster(table):
    with pytest.raises(InputError, match="no column 'Resolution'") as exc:
        parse_prefer(["Resolution"], list(table.columns))
    assert exc.value.path == "prefer"
    with pytest.raises(InputError, match="max_per_cluster"):
        select(table, {e: "SC1" for e in table["experiment"]}, [], 0)
