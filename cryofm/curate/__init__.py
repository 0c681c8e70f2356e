"""Sequence-based curation of experiments (``cryofm curate``), as cryoPANDA curated EMPIAR.

Chains are clustered by sequence identity (MMseqs2 ``easy-cluster``, or an exact pairwise
global-alignment fallback), experiments sharing any chain cluster join one ``SequenceCluster``, and
up to ``max_per_cluster`` representatives per cluster are selected by preference columns.
Modules: :mod:`.sequences` (reading), :mod:`.mmseqs` and :mod:`.pairwise` (the two clustering
paths), :mod:`.clusters` (the experiment-level join), :mod:`.selection`, :mod:`.report`,
:mod:`.command`.
"""
