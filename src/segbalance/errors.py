"""Error types shared by every layer (torch-free)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a file, case, option or value that is not what was expected.

    The CLI prints it as one line, ``error: <where>: <problem> (expected <what>)``,
    and exits with code 2.
    """

    def __init__(self, where: str, problem: str, expected: str | None = None) -> None:
        self.where = str(where)
        self.problem = problem
        self.expected = expected
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.where}: {self.problem}"
        if self.expected:
            text += f" (expected {self.expected})"
        return text


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class TrainingError(RuntimeError):
    """A run that failed at run time (non-finite loss, failed cell, ...): exit code 1."""
