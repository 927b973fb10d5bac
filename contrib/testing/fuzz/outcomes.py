"""What a case came to: its failures (each with a signature: where in the
server it happened), and one exception type per signature."""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import attrs

from .cases import Case

_ROOT = Path(__file__).resolve().parents[3]


def source_path(filename: str) -> str:
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    try:
        return Path(filename).resolve().relative_to(_ROOT).as_posix()
    except ValueError:
        return Path(filename).name


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def last_frames(exc: BaseException, count: int = 4) -> tuple[str, ...]:
    """The innermost frames of ``exc`` (of each leaf of a group), newest last."""
    lines: list[str] = []
    for leaf in _leaves(exc):
        cause = leaf.__cause__ or leaf.__context__
        if cause is not None and not isinstance(cause, BaseExceptionGroup):
            lines.append(f"(caused by {type(cause).__name__}: {cause})")
        for frame in traceback.extract_tb(leaf.__traceback__)[-count:]:
            lines.append(f"{source_path(frame.filename)}:{frame.lineno} in {frame.name}: "
                         f"{(frame.line or '').strip()}")
        lines.append(f"{type(leaf).__name__}: {leaf}")
    return tuple(lines)


def innermost(exc: BaseException) -> str:
    leaf = _leaves(exc)[0]
    frames = traceback.extract_tb(leaf.__traceback__)
    where = f" at {source_path(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    return f"{type(leaf).__name__}{where}"


@attrs.frozen
class Failure:
    kind: str  # process died, 5xx answer, traceback logged, bystander lost...
    summary: str
    frames: tuple[str, ...] = ()
    #: What makes two failures the same bug (for counting distinct ones).
    signature: str = ""

    def report(self) -> str:
        text = f"- {self.kind}: {self.summary}"
        return text + "".join(f"\n    {line}" for line in self.frames)


@attrs.define
class Outcome:
    case: Case
    answer: str = ""
    failures: list[Failure] = attrs.Factory(list)
    seconds: float = 0.0

    def report(self) -> str:
        return (f"front door fuzz case failed: {self.case.reproducer()}\n"
                f"  answer: {self.answer}\n"
                + "\n".join(f.report() for f in self.failures))


class FrontDoorFailure(AssertionError):
    """A case broke the server (see the message for the case and what broke)."""


_FAILURE_TYPES: dict[str, type[FrontDoorFailure]] = {}


def failure_type(signature: str) -> type[FrontDoorFailure]:
    """A subclass of :class:`FrontDoorFailure` per distinct failure, so that
    Hypothesis reports each distinct failure, not only the first."""
    if signature not in _FAILURE_TYPES:
        name = "FrontDoorFailure_" + re.sub(r"\W+", "_", signature)[:60]
        _FAILURE_TYPES[signature] = type(name, (FrontDoorFailure,), {"__module__": __name__})
    return _FAILURE_TYPES[signature]
