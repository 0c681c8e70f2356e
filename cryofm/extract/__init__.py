"""Particle extraction from micrographs at picks, as RELION's Extract does (``cryofm extract``).

One idea per module: :mod:`.binning` (Fourier binning of the whole micrograph), :mod:`.windows`
(boxes at picks, edges, background windows), :mod:`.normalise` (RELION's background normalisation),
:mod:`.contrast` (``invert=auto``), :mod:`.inputs` (micrographs, picks and their matching by name),
:mod:`.ctf` (per-micrograph CTF tables), :mod:`.stacks` (MRC stacks), :mod:`.star` (the RELION 3.1
``particles.star``), :mod:`.run` (the resumable loop) and :mod:`.command` (the CLI entry point).
"""
