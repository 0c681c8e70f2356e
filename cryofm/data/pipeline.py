"""The training stream: WebDataset shards → decoded particles → multi-crop batches with iBOT masks.

Determinism and resume. The samples of rank ``r`` come from ``num_workers`` *streams*; stream ``j``
owns slot ``r · num_workers + j`` of ``world_size · num_workers`` slots. Pass ``p`` over the data
shuffles the shard list with ``(seed, p)`` (the same order on every rank) and gives each slot every
``n_slots``-th shard, or, when there are fewer shards than slots, every ``n_slots``-th sample of
every shard: within a pass no sample is read twice across all ranks and workers. Passes repeat
forever (the trainer counts iterations, DINOv2's ``OFFICIAL_EPOCH_LENGTH``). A seeded shuffle buffer
mixes samples of a stream. Global batch ``b`` of a rank comes from stream ``b mod num_workers`` and
its crops and masks are drawn from a generator seeded with ``(seed, rank, b)``, so a loader started
at batch ``s`` (after a resume) skips the already-used samples of each stream *before* augmenting
them and reproduces exactly the batches an uninterrupted run would have produced.

Corrupt samples (undecodable, wrong shape, non-finite) are skipped and counted (``n_corrupt`` in each
batch: the stream's running count); ``strict=True`` raises :class:`cryofm.errors.InputError` instead.

Short shards. ``tarfile`` stops *silently* at a broken member header in the middle of a shard (it
takes it for the end of the archive), so a damaged shard would shrink the data without a single
error. Every pass therefore counts the samples each shard gave against the number its manifest lists
(``expected``; found automatically for local shard paths of a cryofm dataset, see
:func:`shard_counts`): the samples a shard lacks (all of them for a missing or unreadable shard) are
added to ``n_corrupt`` and logged, once per shard per pass; ``strict=True`` raises instead. A pass
that lost samples and kept fewer than one batch raises (else the stream would spin through passes of
one or two samples and training would hang). Counting changes nothing in which samples are read, so
resume stays exact.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cryofm.data import format as fmt
from cryofm.data.augment import MultiCropConfig, multi_crop
from cryofm.data.masking import sample_masks
from cryofm.data.normalize import fourier_resize
from cryofm.errors import InputError

log = logging.getLogger(__name__)

def train_urls(dataset: str | Path, split: str = "train", template: str | None = None) -> list[str]:
    """Shard URLs of the ``split`` side of a dataset folder (InputError when there are none).

    ``template`` maps each shard's path relative to the dataset root (as the manifest names it) to a
    WebDataset URL, e.g. ``pipe:aws s3 cp s3://bucket/mydataset/{path} -`` or
    ``https://host/mydataset/{path}``: the manifest and split are read locally, the shards streamed.
    """
    from cryofm.data.dataset import split_urls

    root = Path(dataset).resolve()
    urls = [str(u) for u in split_urls(root, split)]
    if not urls:
        raise InputError(dataset, f"the {split!r} split has no shards")
    if template:
        urls = [template.format(path=Path(u).relative_to(root).as_posix()) for u in urls]
    return urls


def split_counts_by_url(dataset: str | Path, split: str = "train",
                        template: str | None = None) -> dict[str, int]:
    """``{url: samples}`` for the URLs :func:`train_urls` gives (``template`` included), to pass as
    ``ParticleStream(expected=...)`` when the shards are streamed (``pipe:``, ``http://``) and
    :func:`shard_counts` cannot find their manifest."""
    from cryofm.data.dataset import load_manifest, split_experiments

    root = Path(dataset).resolve()
    keep = set(split_experiments(root, split))
    out = {}
    for sh in load_manifest(root)["shards"]:
        if sh["experiment"] in keep:
            url = template.format(path=sh["path"]) if template else str(root / sh["path"])
            out[url] = int(sh["n"])
    return out


def shard_counts(urls: list[str]) -> dict[str, int]:
    """``{url: samples its manifest lists}`` for the local shard paths of cryofm datasets.

    A shard ``<root>/shards/<exp>/<file>.tar`` is looked up in ``<root>/manifest.json``; URLs that are
    not local files of a dataset (``pipe:``, ``http://``, a loose tar) are left out (not counted).
    """
    out: dict[str, int] = {}
    tables: dict[Path, dict[str, int]] = {}
    for u in urls:
        if ":" in u.split("/", 1)[0]:  # a scheme (pipe:, http:, s3:): nothing local to look up
            continue
        p = Path(u).absolute()
        if len(p.parts) < 4 or p.parent.parent.name != fmt.SHARDS_DIR:
            continue
        root = p.parent.parent.parent
        if root not in tables:
            tables[root] = {}
            try:
                man = json.loads((root / fmt.MANIFEST).read_text())
                tables[root] = {str(sh["path"]): int(sh["n"]) for sh in man["shards"]}
            except (OSError, ValueError, KeyError, TypeError):
                pass
        n = tables[root].get(p.relative_to(root).as_posix())
        if n is not None:
            out[u] = n
    return out


def pixel_stats(dataset: str | Path) -> tuple[float, float]:
    """Dataset mean/std of the per-particle-normalised pixels (manifest ``pixel_stats``), or (0, 1)."""
    p = Path(dataset) / fmt.MANIFEST
    if not p.is_file():
        return 0.0, 1.0
    st = json.loads(p.read_text()).get("pixel_stats") or {}
    mean, std = st.get("mean"), st.get("std")
    if mean is None or std is None or not std > 0:
        return 0.0, 1.0
    return float(mean), float(std)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class ParticleStream(IterableDataset):
    """Infinite iterable of multi-crop batches (dicts of tensors) for one rank; see the module doc.

    Args:
        urls: shard paths or WebDataset URLs (``pipe:``, ``http://`` ...).
        batch_size: particles per batch on this rank.
        image_size: particles are Fourier-resized to this box (px) after decoding when different.
        crops: the multi-crop configuration.
        mask_ratio, mask_probability: iBOT masking (ratio range, fraction of masked global crops).
        patch: ViT patch size (px), for the mask grid.
        pixel_mean, pixel_std: dataset statistics applied after the stored per-particle normalisation.
        seed, rank, world_size: determinism and splitting.
        num_workers: DataLoader workers (the number of streams; keep it when resuming).
        shuffle_buffer: samples in the shuffle buffer of each stream.
        start_batch: first batch index (resume).
        strict: raise on a corrupt sample or a short shard instead of skipping and counting it.
        expected: samples per shard URL (default: :func:`shard_counts` of ``urls``), to catch short
            shards (see the module doc).
    """

    def __init__(
        self,
        urls: list[str],
        batch_size: int,
        image_size: int,
        crops: MultiCropConfig,
        mask_ratio: tuple[float, float],
        mask_probability: float,
        patch: int,
        pixel_mean: float = 0.0,
        pixel_std: float = 1.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
        start_batch: int = 0,
        strict: bool = False,
        expected: dict[str, int] | None = None,
    ):
        super().__init__()
        self.urls = list(urls)
        self.batch_size, self.image_size, self.crops = int(batch_size), int(image_size), crops
        self.mask_ratio, self.mask_probability, self.patch = tuple(mask_ratio), float(mask_probability), patch
        self.mean, self.std = float(pixel_mean), float(pixel_std)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.n_streams = max(int(num_workers), 1)
        self.shuffle_buffer, self.start_batch, self.strict = int(shuffle_buffer), int(start_batch), strict
        self.n_corrupt = 0
        self.expected = shard_counts(self.urls) if expected is None else dict(expected)
        self._all_counted = bool(self.urls) and all(u in self.expected for u in self.urls)
        self.n_short = 0  # short-shard events (a shard short in a pass counts once per pass)
        self._warned: set[str] = set()

    # -- raw samples -------------------------------------------------------------------------
    def _pass_sources(self, stream: int, p: int) -> tuple[list[str], int, int]:
        """(shards, sample stride, sample offset) of ``stream`` in pass ``p``."""
        order = np.random.default_rng(_seed(self.seed, 7919, p)).permutation(len(self.urls))
        n_slots = self.world_size * self.n_streams
        slot = self.rank * self.n_streams + stream
        if len(self.urls) >= n_slots:
            return [self.urls[i] for i in order[slot::n_slots]], 1, 0
        return [self.urls[i] for i in order], n_slots, slot

    def _raw(self, stream: int) -> Iterator[dict]:
        """This stream's raw samples, pass after pass, through a seeded shuffle buffer."""
        rng = np.random.default_rng(_seed(self.seed, 104729, self.rank, stream))
        buf: list[dict] = []
        p = 0
        while True:
            shards, stride, offset = self._pass_sources(stream, p)
            handler = self._raise_shard if self.strict else self._skip_shard
            src = wds.tariterators.tarfile_samples([{"url": u} for u in shards], handler=handler)
            n_seen = 0
            got: dict[str, int] = dict.fromkeys(shards, 0)
            current = None
            for i, s in enumerate(src):
                url = s.get("__url__")
                if url != current:
                    if current is not None:
                        self._check_count(current, got[current], p)
                    current = url
                got[url] = got.get(url, 0) + 1
                if i % stride != offset:
                    continue
                n_seen += 1
                if len(buf) < self.shuffle_buffer:
                    buf.append(s)
                    continue
                j = int(rng.integers(len(buf)))
                buf[j], s = s, buf[j]
                yield s
            for u in shards:  # the shard read last, and those that gave nothing (missing, unreadable)
                if u == current or got[u] == 0:
                    self._check_count(u, got[u], p)
            if n_seen == 0:
                raise InputError(shards[0] if shards else None, "no readable samples in this stream's shards")
            short = [u for u in shards if got[u] < self.expected.get(u, 0)]
            if short and n_seen < self.batch_size:  # damaged data too small for one batch: passes would
                listed = sum(self.expected.get(u, 0) for u in shards) // stride  # spin, not train
                raise InputError(short[0], f"only {n_seen} readable samples of the {listed} this "
                                           f"stream's shards list (corrupt or truncated); a batch needs "
                                           f"{self.batch_size}")
            p += 1  # the buffer carries over: samples keep mixing across passes

    def _check_count(self, url: str, got: int, p: int) -> None:
        """Compare the samples a shard gave in pass ``p`` with its manifest's count."""
        want = self.expected.get(url)
        if want is None or got == want:
            return
        problem = (f"shard gave {got} of the {want} samples its manifest lists (corrupt or truncated)"
                   if got < want else f"shard gave {got} samples, its manifest lists {want} (rewritten?)")
        if self.strict:
            raise InputError(url, problem)
        self.n_corrupt += max(want - got, 0)
        self.n_short += 1
        if url not in self._warned:  # once per shard per stream: the count keeps growing every pass
            self._warned.add(url)
            log.warning("%s: %s; pass %d goes on without the missing samples (counted in n_corrupt)",
                        url, problem, p)

    def _skip_shard(self, exn: Exception) -> bool:
        if not self._all_counted:  # else the loss is counted, per sample, by _check_count
            self.n_corrupt += 1
        return True

    def _raise_shard(self, exn: Exception) -> bool:
        url = exn.args[-1] if exn.args and isinstance(exn.args[-1], str) else None
        raise InputError(url, f"unreadable shard ({type(exn).__name__}: {exn.args[0] if exn.args else exn})")

    def _decode(self, s: dict) -> torch.Tensor | None:
        try:
            img, _ = fmt.decode_sample(s)
            if img.ndim != 2 or img.shape[0] != img.shape[1] or not np.isfinite(img).all():
                raise ValueError(f"bad image (shape {img.shape} or non-finite values)")
        except Exception as exc:
            if self.strict:
                raise InputError(s.get("__url__"), f"corrupt sample {s.get('__key__')}: {exc}") from exc
            self.n_corrupt += 1
            return None
        if img.shape[0] != self.image_size:
            img = fourier_resize(img, self.image_size)
        return torch.from_numpy((img - self.mean) / self.std)

    def _particles(self, stream: int, skip: int) -> Iterator[tuple[str, torch.Tensor]]:
        for s in self._raw(stream):
            img = self._decode(s)
            if img is None:
                continue
            if skip > 0:
                skip -= 1
                continue
            yield s.get("__key__", ""), img

    # -- batches ------------------------------------------------------------------------------
    def make_batch(self, images: list[torch.Tensor], keys: list[str], b: int) -> dict[str, Any]:
        """Crops and masks of batch ``b`` from its particles (generator seeded by (seed, rank, b))."""
        g = torch.Generator().manual_seed(_seed(self.seed, self.rank, b))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny ops: threads only spin (DINOv2 runs its workers this way)
        try:
            out: dict[str, Any] = multi_crop(torch.stack(images), self.crops, g)
        finally:
            torch.set_num_threads(threads)
        grid = self.crops.global_crops.size // self.patch
        rng = np.random.default_rng(_seed(self.seed, self.rank, b, 31))
        masks = sample_masks(
            out["global_crops"].shape[0], grid, grid, self.mask_ratio, self.mask_probability, rng
        )
        out["masks"] = torch.from_numpy(masks)
        out["keys"] = keys
        out["batch_index"] = b
        out["n_corrupt"] = self.n_corrupt
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if nw != self.n_streams:
            raise ValueError(f"ParticleStream built for {self.n_streams} workers, DataLoader has {nw}")
        s0 = self.start_batch
        # this worker serves batches s0 + wid, s0 + wid + nw, ...; all belong to one stream
        b = s0 + wid
        stream = b % self.n_streams
        used = max(0, -(-(s0 - stream) // self.n_streams))  # batches of this stream before s0
        it = self._particles(stream, used * self.batch_size)
        while True:
            keys, images = [], []
            for _ in range(self.batch_size):
                k, im = next(it)
                keys.append(k)
                images.append(im)
            yield self.make_batch(images, keys, b)
            b += self.n_streams


def make_loader(stream: ParticleStream, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``stream`` (batches are built in the workers)."""
    kw: dict[str, Any] = {}
    if num_workers > 0:
        kw.update(
            persistent_workers=False,
            prefetch_factor=2,
            multiprocessing_context="fork" if os.name == "posix" else None,
        )
    return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **kw)
