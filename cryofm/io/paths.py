"""Where the image stacks named in particle metadata live, without leaving the folder the user named.

RELION writes ``rlnImageName`` relative to the *project directory* (the folder holding
``default_pipeline.star``, where RELION runs), not to the STAR file's folder:
``Refine3D/job020/run_data.star`` names ``000001@Extract/job012/Movies/mic1.mrcs``. cryoSPARC writes
``blob/path`` relative to the project directory too (``J19/extract/...``; a leading ``>`` marks an
imported file), the folder holding ``project.json``.

The folders tried, in order (each once):

1. ``root=`` when given;
2. the inferred project directory: the nearest folder at or above the metadata file's folder that
   holds ``default_pipeline.star`` (RELION) or ``project.json`` (cryoSPARC; a ``J<n>`` job folder's
   parent also counts);
3. the metadata file's own folder.

The first of these is the *containment root*: every stack must lie inside it, and folders of the
list outside it are not tried. A name that is absolute, or climbs out with ``..``, so that it lands
outside the containment root is refused before anything is opened (one-line error naming the row),
as is a name that is not an MRC file (``.mrcs``, ``.mrc``, ``.st``). The check is on the path as
written, normalised (``..`` collapsed), not on symlink targets: a symlink inside the project (RELION
links ``Movies/`` to the raw data) was made by the user and is followed; a hostile STAR cannot make one.

The path as written wins: it is looked for under each folder in order, and the first that exists is
used. Only when it exists under none is a stack of the same *file name* in one of the folders taken,
and that substitution is recorded (``notes``) and reported by ingest; two different same-named
candidates are refused as ambiguous. A stack found nowhere is reported when the stacks are checked,
naming the folders searched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryofm.errors import InputError

STACK_SUFFIXES = (".mrcs", ".mrc", ".st")
MAX_LEVELS = 6  # how far up from the metadata file a project directory is looked for
_JOB_DIR = re.compile(r"^J\d+$")


def project_dir(start: Path, kind: str) -> Path | None:
    """The RELION (``kind='relion'``) or cryoSPARC (``'cryosparc'``) project directory at or above
    ``start`` (at most :data:`MAX_LEVELS` folders up), or None."""
    marker = "default_pipeline.star" if kind == "relion" else "project.json"
    d = start
    for _ in range(MAX_LEVELS + 1):
        if (d / marker).is_file():
            return d
        if d.parent == d:
            break
        d = d.parent
    if kind == "cryosparc" and _JOB_DIR.match(start.name):
        return start.parent
    return None


def is_inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies under it (both normalised, as written)."""
    return path == folder or path.is_relative_to(folder)


def normalised(path: Path) -> Path:
    """``path`` with ``..`` and ``.`` collapsed, symlinks not resolved."""
    return Path(os.path.normpath(path))


def table_file(value: str, table: Path, root: str | Path | None, what: str) -> Path:
    """The file ``value`` named in a row of the user's ``table`` (relative to the table's folder, or
    absolute), refused (InputError naming the table, not opened) when it leads outside ``root`` —
    the table's folder unless ``root=`` names another (checked on the path as written, ``..``
    collapsed; symlinks inside the folder are followed, as for stacks). ``what`` names the row."""
    base = normalised(Path(table).absolute().parent)
    bound = Path(root) if root else Path(table).parent
    p = Path(value)
    cand = normalised(p if p.is_absolute() else base / p)
    if not any(is_inside(cand, b) for b in bounds(bound)):
        why = "root=" if root else "the table's folder"
        raise InputError(table, f"{what}: {value!r} leads outside {normalised(bound.absolute())} ({why}); "
                                "not opened (pass root=<folder that holds the files> to allow it)")
    return cand


def bounds(folder: Path) -> set[Path]:
    """``folder`` as typed and with symlinks resolved (normalised): a name written through either
    spelling (``/home`` → ``/mnt/home``) is inside it."""
    return {normalised(Path(folder).absolute()), normalised(Path(folder).resolve())}


def _unresolved(project: Path, meta: Path) -> Path:
    """The project dir as reached from the metadata path typed (without resolving symlinks)."""
    typed = normalised(meta.absolute().parent)
    resolved = normalised(meta.resolve().parent)
    try:
        up = len(resolved.relative_to(project).parts)
    except ValueError:
        return project
    return typed.parents[up - 1] if up else typed


class StackResolver:
    """Resolve stack names of one metadata file (see the module doc).

    Args:
        meta: the metadata file (``.star`` / ``.cs``).
        root: ``root=`` (the folder the user named), or None.
        kind: ``"relion"`` or ``"cryosparc"`` (which project marker to look for).
    """

    def __init__(self, meta: Path, root: str | Path | None, kind: str):
        self.meta = Path(meta)
        meta_dir = normalised(self.meta.resolve().parent)
        explicit = normalised(Path(root).resolve()) if root else None
        self.project = project_dir(meta_dir, kind)
        named: list[tuple[Path, str]] = []
        for folder, why in ((explicit, "root="), (self.project, "the project directory"),
                            (meta_dir, "the metadata file's folder")):
            if folder is not None and all(folder != f for f, _ in named):
                named.append((folder, why))
        self.root, self.root_why = named[0]
        self.folders = [f for f, _ in named if is_inside(f, self.root)]
        # the containment root also as typed (symlinks not resolved): an absolute name written through
        # a linked path (/home -> /mnt/home) is still inside
        typed = (normalised(Path(root).absolute()) if root else
                 (_unresolved(self.project, self.meta) if self.project is not None
                  else normalised(self.meta.absolute().parent)))
        self._roots = {self.root, typed}
        self.notes: list[str] = []  # substitutions made (a same-named stack used for a missing one)
        self._cache: dict[str, str] = {}

    @property
    def searched(self) -> str:
        """The folders tried, for error messages."""
        return ", ".join(str(f) for f in self.folders)

    def _refuse(self, row: int, image_name: str, problem: str) -> InputError:
        return InputError(self.meta, f"row {row + 1} ({image_name}): {problem}")

    def resolve(self, name: str, row: int, image_name: str) -> str:
        """Absolute path of stack ``name`` (named by 0-based ``row``, ``image_name`` as written).

        Raises InputError for a name outside the containment root, a non-MRC name, or an ambiguous
        substitution; a stack that exists nowhere is returned as its path under the first folder.
        """
        if name in self._cache:
            return self._cache[name]
        p = Path(name)
        if p.suffix.lower() not in STACK_SUFFIXES:
            raise self._refuse(row, image_name, f"{name!r} is not an MRC stack name "
                                                f"({', '.join(STACK_SUFFIXES)}); not opened")
        written = [normalised(p)] if p.is_absolute() else [normalised(f / p) for f in self.folders]
        inside = [c for c in written if any(is_inside(c, r) for r in self._roots)]
        if not inside:
            raise self._refuse(row, image_name, f"stack path {name!r} leads outside {self.root} "
                                                f"({self.root_why}); not opened (pass root=<folder "
                                                "that holds the stacks> to allow it)")
        found = next((c for c in inside if c.is_file()), None)
        if found is None and p.name != str(p):  # the named path exists nowhere: same file name?
            same = sorted({c for c in (f / p.name for f in self.folders) if c.is_file()})
            if len(same) > 1:
                raise self._refuse(row, image_name, f"stack {name!r} not found as written under "
                                                    f"{self.searched}, and several files share its name "
                                                    f"({', '.join(map(str, same))}): ambiguous")
            if same:
                found = same[0]
                self.notes.append(f"{name} (not found as written under {self.searched}) -> {found}")
        out = str(found if found is not None else inside[0])
        self._cache[name] = out
        return out
