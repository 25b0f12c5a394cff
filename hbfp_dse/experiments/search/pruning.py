"""Stopping trials that can no longer reach the target.

After epoch ``e`` (1-based) of ``E``, a trial stops when ``e >= grace_epochs`` and
``acc + margin + margin_per_epoch * (E - e) < target``, ``acc`` the epoch's validation accuracy
(its test accuracy where the run holds out no validation split) (:class:`~.section.PruneRule`). A
stopped trial is not raised as ``TrialPruned``: its objective returns the accuracy it reached,
so it ends COMPLETE with its real density and a violated constraint. That keeps it in NSGA-II's
population (which only takes COMPLETE trials), lets TPE rank it among the infeasible trials by
how far it fell short, and keeps it out of the best trials. Its user attribute
``stopped_at_epoch`` tells it apart.
"""

from __future__ import annotations

import optuna

from ...training.config import TrainConfig
from ...training.results import EpochRecord
from .section import PruneRule, SearchSpace
from .study import target_accuracy


class TargetPruner:
    """A trainer callback: reports each epoch's validation accuracy to the trial (single-objective
    studies only: Optuna has no intermediate values for several objectives) and stops the run
    when ``rule`` finds the target out of reach, recording ``stopped_at_epoch`` (0-based)."""

    def __init__(self, trial: optuna.Trial, target: float, epochs: int, rule: PruneRule) -> None:
        self.trial = trial
        self.target = target
        self.epochs = epochs
        self.rule = rule

    def on_epoch_end(self, record: EpochRecord) -> bool:
        if len(self.trial.study.directions) == 1:
            self.trial.report(record.selection_acc, record.epoch)
        if self.rule.hopeless(record.selection_acc, record.epoch + 1, self.epochs, self.target):
            self.trial.set_user_attr("stopped_at_epoch", record.epoch)
            return True
        return False


def make_pruner(
    trial: optuna.Trial, space: SearchSpace, config: TrainConfig
) -> TargetPruner | None:
    """The pruning callback for one trial's training, or None where the space disables it."""
    if space.prune is None:
        return None
    return TargetPruner(trial, target_accuracy(trial.study), config.epochs, space.prune)
