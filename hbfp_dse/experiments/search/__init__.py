"""Optuna search for the densest schedule that still reaches a target accuracy.

``section``: the ``search:`` section of a sweep file; ``points``: layer groups, trial parameters
and the configurations they stand for, the anchors tried first; ``sampler``: Optuna's samplers
without repeats; ``study``: creating, binding, running and reading a study; ``trials``: trials
that train as runs of the store. Importing this package (or ``section``) does not import Optuna.
"""
