"""How a crash run ended, a pipeline's report of its runs, and the table the test and the
bench print."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.crash.boundaries import Call, When


@dataclass
class Verdict:
    """How one run ended."""

    boundary: str
    effects: dict[str, int]
    dead_letters: int
    reasonless: int
    stranded: int

    @property
    def total(self) -> int:
        return sum(self.effects.values())

    @property
    def doubled(self) -> bool:
        return self.total > 1

    @property
    def lost(self) -> bool:
        return self.total == 0 and self.dead_letters - self.reasonless == 0

    @property
    def ok(self) -> bool:
        return not self.doubled and not self.lost and self.reasonless == 0 and not self.stranded

    def __str__(self) -> str:
        return (
            f"{self.boundary}: effects {self.effects}, dead letters {self.dead_letters}"
            f" ({self.reasonless} without reason), stranded {self.stranded}"
        )


@dataclass
class Report:
    """A pipeline's row: the calls it found, the crash runs and how they ended."""

    pipeline: str
    calls: list[Call] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def crashes(self) -> int:
        return len(self.verdicts)

    def count(self, what: str) -> int:
        if what == "reasonless":
            return sum(v.reasonless for v in self.verdicts)
        return sum(1 for v in self.verdicts if getattr(v, what))

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]


def crash_points(calls: list[Call], *, every: bool) -> list[tuple[int, When]]:
    """Where to crash: before and after every call, or (``every`` false) only the distinct
    states a crash can leave: before the first call, and after each call that can change
    something. Nothing leaves the function between one call's answer and the next call, so
    "before call i" leaves what "after call i-1" leaves, and after a read the world is as it
    was after the call before it; the full run checks all of them."""
    if every:
        return [(i, when) for i in range(len(calls)) for when in ("before", "after")]
    if not calls:
        return []
    return [(0, "before"), *((i, "after") for i, call in enumerate(calls) if not call.reads)]


def table(reports: list[Report]) -> str:
    """The per-pipeline summary the test and the bench print."""
    header = ("pipeline", "boundaries", "crashes", "lost", "doubled", "reasonless DLQ")
    rows = [header] + [
        (
            r.pipeline,
            str(len(r.calls)),
            str(r.crashes),
            str(r.count("lost")),
            str(r.count("doubled")),
            str(r.count("reasonless")),
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    for report in reports:
        lines.extend(f"  {report.pipeline}: {verdict}" for verdict in report.failures)
    return "\n".join(lines)
