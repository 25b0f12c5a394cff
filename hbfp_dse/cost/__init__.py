"""Arithmetic-density cost model (BRIEF §4, docs/cost-model.md).

``areas``: the unit-area table and the fits for what it lacks; ``pe``: PE area and density per
format; ``macs``: MACs of each training GEMM per layer; ``density``: a run's density under a
per-epoch, per-layer format schedule.
"""

from .areas import UnitAreas, default_areas, load_areas
from .density import EpochFormats, GemmFormats, LayerCost, RunCost, Storage, run_cost
from .errors import AreaTableError, CostError
from .macs import GEMM_ROLES, LayerMACs, count_macs
from .pe import PEArea, PEPart, density, pe_area, pe_breakdown

__all__ = [
    "GEMM_ROLES",
    "AreaTableError",
    "CostError",
    "EpochFormats",
    "GemmFormats",
    "LayerCost",
    "LayerMACs",
    "PEArea",
    "PEPart",
    "RunCost",
    "Storage",
    "UnitAreas",
    "count_macs",
    "default_areas",
    "density",
    "load_areas",
    "pe_area",
    "pe_breakdown",
    "run_cost",
]
