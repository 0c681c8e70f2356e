"""The one error type that reaches users as a one-line message."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input: names the file and the problem; the CLI prints it on one line and exits 2."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):  # picklable, so a worker process's error reaches the parent intact
        return (type(self), (self.path, self.problem))
