"""Experiment-level splits: groups never straddle sides, determinism, stratification, loader."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.data import dataset, ingest, split
from cryofm.errors import InputError


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(0)
    for i in range(12):
        n = 2 + i % 3
        items = [(rng.normal(size=(16, 16)).astype(np.float32), {}) for _ in range(n)]
        facts = {"SequenceCluster": f"c{i // 2}", "ProteinClass": "ribosome" if i < 6 else "channel"}
        ingest.ingest_arrays(root, f"exp{i:02d}", items, box=16, facts=facts, merge=False, progress=False)
    from cryofm.data.manifest import merge_manifests
    merge_manifests(root)
    return root


def test_groups_stay_together_and_counts_add_up(ds):
    r = split.make_split(ds, seed=3, fractions=(0.5, 0.25, 0.25), group_key="SequenceCluster")
    a = r["assignment"]
    assert len(a) == 12
    for c in range(6):
        assert a[f"exp{2 * c:02d}"] == a[f"exp{2 * c + 1:02d}"]
    sides = [a[e] for e in sorted(a)]
    # 6 groups in 0.5 / 0.25 / 0.25 -> 3 / 2 / 1 groups by largest remainder (then at least one each)
    assert sorted(sides.count(s) // 2 for s in ("train", "val", "heldout")) == [1, 2, 3]
    man = dataset.load_manifest(ds)
    for side in ("train", "val", "heldout"):
        want = sum(man["experiments"][e]["n"] for e in a if a[e] == side)
        assert r["summary"][side]["particles"] == want == dataset.split_counts(ds, side)
    assert dataset.load_split(ds) == a


def test_deterministic_from_seed(ds):
    r1 = split.make_split(ds, seed=7, write=False)["assignment"]
    r2 = split.make_split(ds, seed=7, write=False)["assignment"]
    seeds = [split.make_split(ds, seed=s, write=False)["assignment"] for s in range(6)]
    assert r1 == r2
    assert len({tuple(sorted(x.items())) for x in seeds}) > 1


def test_stratified_each_class_on_each_side(ds):
    r = split.make_split(ds, seed=1, fractions=(0.34, 0.33, 0.33), stratify_key="ProteinClass",
                         write=False)["assignment"]
    for cls, exps in (("ribosome", range(6)), ("channel", range(6, 12))):
        sides = [r[f"exp{i:02d}"] for i in exps]
        assert sorted(sides) == ["heldout"] * 2 + ["train"] * 2 + ["val"] * 2, cls


def test_forced_heldout_and_split_urls(ds):
    r = split.make_split(ds, seed=0, group_key="SequenceCluster", heldout=["exp04"])
    a = r["assignment"]
    assert a["exp04"] == a["exp05"] == "heldout"
    assert [e for e in a if a[e] == "heldout"] == ["exp04", "exp05"]
    urls = dataset.split_urls(ds, "heldout")
    assert [u.rsplit("/", 1)[1] for u in urls] == ["exp04-000000.tar", "exp05-000000.tar"]
    got = {rec["experiment"] for _, rec in dataset.iter_samples(ds, "train")}
    assert got == {e for e in a if a[e] == "train"}
    with pytest.raises(InputError, match="unknown experiment"):
        split.make_split(ds, heldout=["nope"], write=False)


def test_targets_largest_remainder():
    assert split._targets(10, np.array([0.8, 0.1, 0.1])).tolist() == [8, 1, 1]
    assert split._targets(3, np.array([0.8, 0.1, 0.1])).tolist() == [1, 1, 1]
    assert split._targets(2, np.array([1.0, 0.0, 0.0])).tolist() == [2, 0, 0]
