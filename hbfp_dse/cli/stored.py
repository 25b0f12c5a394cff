"""What the store already holds for a sweep file, read before anything is written. A store
that is not there yet holds nothing; one that cannot be read (unreachable through its retries,
not ours, another schema) is an error here, since what it holds decides how the sweep runs."""

from __future__ import annotations

from ..experiments.store import (
    NoDatabaseError,
    NoResultsError,
    RunRecord,
    Store,
    UnknownSweepError,
)
from ..experiments.sweepfile import SweepSpec, kept_without_validation
from .common import err_console


def stored_runs(
    db: str | None, sweep: str | None = None, *, with_epochs: bool = False
) -> list[RunRecord]:
    """The stored runs (of ``sweep``, where given); none where there are none."""
    try:
        store = Store(db, create=False)
    except (NoDatabaseError, NoResultsError):
        return []
    try:
        return store.runs(sweep, with_epochs=with_epochs)
    except UnknownSweepError:
        return []
    finally:
        store.close()


def as_registered(db: str | None, spec: SweepSpec, text: str) -> SweepSpec:
    """The sweep as its stored runs were registered: one stored before validation splits
    existed keeps training without one (``kept_without_validation``), and says so."""
    kept = kept_without_validation(spec, text, [r.config for r in stored_runs(db, spec.name)])
    if kept is None:
        return spec
    err_console.print(
        f"[yellow]note:[/] sweep {spec.name} was stored before validation splits: it resumes "
        "without one, and best chooses on test accuracy; set 'validation: 0.1' in its base "
        "to hold one out (its runs train again)",
        highlight=False,
        soft_wrap=True,
    )
    return kept
