"""A terminal progress display for ingestion: documents done of the total listed, rate, ETA, outcomes."""

from __future__ import annotations

from collections import Counter
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """Callable as ``progress(status, source)``; shows a live line on a terminal, nothing when piped."""

    def __init__(self, console: Console) -> None:
        self.counts: Counter[str] = Counter()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]ingesting[/]"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("docs  {task.fields[rate]:.1f} docs/s  {task.fields[summary]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[current]}"),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task("ingest", total=None, rate=0.0, summary="", current="")

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def set_total(self, total: int) -> None:
        """The number of documents listed; turns the spinner into a bar with an ETA."""
        self._progress.update(self._task, total=total)

    def __call__(self, status: str, source: str) -> None:
        """Record one document's outcome."""
        self.counts[status] += 1
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        done = sum(self.counts.values())
        summary = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        self._progress.update(
            self._task,
            completed=done,
            rate=done / elapsed if elapsed > 0 else 0.0,
            summary=summary,
            current=source.rsplit("/", 1)[-1][:40],
        )
