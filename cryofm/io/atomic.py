"""Atomic models (PDB / mmCIF) read with gemmi, optionally expanded to the biological assembly.

Coordinates are in Å in the model's own frame. The assembly comes from mmCIF assembly records or
PDB ``REMARK 350 BIOMT`` (gemmi reads both into ``Structure.assemblies``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from cryofm.errors import InputError


@dataclass
class AtomicModel:
    """Flat per-atom arrays of one model (first model of the file).

    Attributes:
        xyz: [N, 3] float64 positions in Å (x, y, z).
        element: [N] element symbols, upper case ("C", "N", "O", "S", "FE", ...).
        atom_name: [N] atom names ("CA", "CB", "C", "O", "N", ...).
        residue_name: [N] residue names ("ALA", "DG", ...).
        chain: [N] chain names (assembly copies get suffixed names from gemmi).
        b_factor: [N] B-factors in Å².
        occupancy: [N] occupancies in [0, 1].
        n_chains: number of polymer chains (subunits).
        source: the file read.
    """

    xyz: np.ndarray
    element: np.ndarray
    atom_name: np.ndarray
    residue_name: np.ndarray
    chain: np.ndarray
    b_factor: np.ndarray
    occupancy: np.ndarray
    n_chains: int
    source: str

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def atomic_number(self) -> np.ndarray:
        """[N] atomic numbers (0 for unknown elements)."""
        return np.array([gemmi.Element(e).atomic_number for e in self.element], dtype=np.int32)

    def mass_kda(self) -> float:
        """Total mass of the atoms in kDa (hydrogens absent from most models are not added)."""
        w = np.array([gemmi.Element(e).weight for e in self.element], dtype=np.float64)
        return float((w * self.occupancy.clip(0, 1)).sum() / 1000.0)

    def max_diameter(self) -> float:
        """Largest distance between two atoms in Å (from the convex hull; exact)."""
        from scipy.spatial import ConvexHull
        from scipy.spatial.distance import pdist

        pts = self.xyz
        if len(pts) > 4:
            pts = pts[ConvexHull(pts).vertices]
        return float(pdist(pts).max()) if len(pts) > 1 else 0.0


def read_model(path: str | Path, assembly: bool = True, remove_hydrogens: bool = True,
               remove_waters: bool = True) -> AtomicModel:
    """Read a PDB / mmCIF file; with ``assembly`` apply its first biological assembly (BIOMT).

    Raises InputError naming the file when it cannot be read or holds no atoms.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "atomic model not found")
    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as exc:
        raise InputError(path, f"cannot read atomic model: {exc}") from exc
    st.setup_entities()
    if remove_hydrogens:
        st.remove_hydrogens()
    if remove_waters:
        st.remove_waters()
    if len(st) == 0:
        raise InputError(path, "no model in file")
    if assembly and st.assemblies:
        try:
            model = gemmi.make_assembly(st.assemblies[0], st[0], gemmi.HowToNameCopiedChain.AddNumber)
        except RuntimeError as exc:  # e.g. BIOMT naming chains the file lacks
            raise InputError(path, f"cannot build the biological assembly: {exc}") from exc
    else:
        model = st[0]
    xyz, element, atom_name, residue_name, chain, b, occ = [], [], [], [], [], [], []
    n_chains = 0
    for ch in model:
        if ch.get_polymer().length() > 0:
            n_chains += 1
        for res in ch:
            for atom in res:
                p = atom.pos
                xyz.append((p.x, p.y, p.z))
                element.append(atom.element.name.upper())
                atom_name.append(atom.name)
                residue_name.append(res.name)
                chain.append(ch.name)
                b.append(atom.b_iso)
                occ.append(atom.occ)
    if not xyz:
        raise InputError(path, "no atoms in model")
    return AtomicModel(
        xyz=np.asarray(xyz, dtype=np.float64), element=np.asarray(element),
        atom_name=np.asarray(atom_name), residue_name=np.asarray(residue_name),
        chain=np.asarray(chain), b_factor=np.asarray(b, dtype=np.float32),
        occupancy=np.asarray(occ, dtype=np.float32), n_chains=n_chains, source=str(path),
    )
