"""Errors a user can act on: each names where the problem is, what was found and what is allowed."""

from __future__ import annotations

from typing import Any


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PolytaskError(Exception):
    """Base class of every error polytask raises on purpose (the CLI prints these without a traceback)."""


class DataError(PolytaskError, ValueError):
    """Bad input data. The message reads ``FILE:LINE: field 'F': value V: PROBLEM (allowed: ...)``."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        value: Any = ...,
        allowed: str | None = None,
        location: str | None = None,
    ) -> None:
        self.problem, self.file, self.line, self.field = problem, file, line, field
        self.value, self.allowed = value, allowed
        if location is None:
            location = file or "<input>"
            if line is not None:
                location += f":{line}"
        self.location = location
        parts = [location]
        if field is not None:
            parts.append(f"field {field!r}")
        if value is not ...:
            parts.append(f"value {_short(value)}")
        message = ": ".join(parts) + f": {problem}"
        if allowed:
            message += f" (allowed: {allowed})"
        super().__init__(message)


class ConfigError(PolytaskError, ValueError):
    """One or more problems in a config file; ``problems`` lists all of them, each as 'path.to.key: message'."""

    def __init__(self, source: str, problems: list[str], note: str | None = None) -> None:
        self.source, self.problems, self.note = source, problems, note
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the config:\n{lines}" + (f"\n{note}" if note else ""))


class OptionError(PolytaskError, ValueError):
    """A command-line option (or the matching library argument) with a value it does not take."""

    def __init__(self, option: str, value: Any, problem: str, allowed: str) -> None:
        self.option, self.value, self.allowed = option, value, allowed
        super().__init__(f"{option}: value {_short(value)}: {problem} (allowed: {allowed})")


def check_choice(option: str, value: Any, choices: tuple[str, ...], what: str) -> str:
    """``value`` when it is one of ``choices``; else an OptionError naming the option and the choices."""
    if value not in choices:
        raise OptionError(option, value, f"unknown {what}", ", ".join(choices))
    return value


class DataCheckError(PolytaskError, ValueError):
    """Every problem ``polytask validate`` found in the data (each a DataError message), raised together."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the data:\n{lines}")
