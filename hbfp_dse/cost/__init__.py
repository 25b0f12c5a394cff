"""Arithmetic-density cost model (docs/cost-model.md), on plain models and schedules.

``areas``: the unit-area table and the fits for what it lacks; ``pe``: PE area and density per
format; ``gemms``: a layer's work in each training GEMM, which ``macs`` counts on a model;
``density``: a run's density under a per-epoch, per-layer format schedule. Pricing a training
configuration is ``hbfp_dse.experiments.costing``.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .areas import UnitAreas, default_areas, load_areas
from .density import (
    EpochFormats,
    GemmFormats,
    LayerCost,
    OperandBits,
    RunCost,
    mac_share_label,
    run_cost,
)
from .errors import AreaTableError, CostError
from .gemms import GEMM_ROLES, LayerMACs
from .pe import PEArea, PEPart, density, pe_area, pe_breakdown

if TYPE_CHECKING:
    from .macs import count_macs

__getattr__ = lazy_attributes(__name__, {"count_macs": "macs"})

__all__ = [
    "GEMM_ROLES",
    "AreaTableError",
    "CostError",
    "EpochFormats",
    "GemmFormats",
    "LayerCost",
    "LayerMACs",
    "OperandBits",
    "PEArea",
    "PEPart",
    "RunCost",
    "UnitAreas",
    "count_macs",
    "default_areas",
    "density",
    "load_areas",
    "mac_share_label",
    "pe_area",
    "pe_breakdown",
    "run_cost",
]
