"""Mapping errors: every problem of every file, each with file:line and the key it is about."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MappingProblem:
    """One problem in a mapping file.

    file:    the file's path as found under the mappings directory (or the directory itself)
    line:    1-based line of the offending key in that file, None when it does not apply
    key:     dotted key path inside the file, e.g. "root.fields.total.type" or "children[0].enrich[1]"
    message: what is wrong and what is allowed there
    """

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class MappingError(Exception):
    """The mappings cannot be used. `errors` lists every problem found in every file.

    str() is the full report, one problem per line, ready to print.
    exit_code is read by the command line (1 = mapping errors).
    """

    exit_code = 1

    def __init__(self, errors: list[MappingProblem], directory: str | None = None) -> None:
        self.errors = list(errors)
        self.directory = directory
        super().__init__(self.report())

    def report(self) -> str:
        n = len(self.errors)
        head = f"{n} problem{'s' if n != 1 else ''} in mappings"
        if self.directory is not None:
            head += f" {self.directory}"
        return "\n".join([head + ":", *(f"  {e}" for e in self.errors)])

    def __str__(self) -> str:
        return self.report()
