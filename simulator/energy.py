"""Energy = events x energy per event + static power x time, every constant from the chip
(and, for link bytes, from the system's links)."""

from __future__ import annotations

import numpy as np

from hardware.chip import ChipConfig
from simulator.engine.timing import COUNTS

PJ = 1e-12
OWN_RAIL = ("hbm", "link")  # energies that do not scale with the cores' DVFS


def energy_breakdown(totals: np.ndarray, chip: ChipConfig, time_s: float, chips: int = 1,
                     dynamic_scale: float = 1.0, link_pj_per_byte: float = 0.0
                     ) -> dict[str, float]:
    """Joules by component. ``dynamic_scale`` is the DVFS factor (V^2) of a lowered clock;
    link energy is per byte per hop of the system's links (``link.pj_per_byte``)."""
    t = dict(zip(COUNTS, totals.tolist()))
    e = chip.energy
    dyn = {
        "compute": t["mac_pj"] * PJ + t["vector_ops"] * e.vector_pj * PJ,
        "sram": (t["sram_read"] + t["sram_write"]) * e.sram_pj_per_byte * PJ,
        "accumulator": (t["acc_read"] + t["acc_write"]) * e.acc_pj_per_byte * PJ,
        "l2": t["l2_read"] * e.l2_pj_per_byte * PJ,
        "hbm": (t["hbm_read"] + t["hbm_write"]) * e.hbm_pj_per_byte * PJ,
        "link": t["link_bytes"] * link_pj_per_byte * PJ,
    }
    # the cores' rail follows the clock's voltage; HBM and the links have rails of their own
    out = {k: v if k in OWN_RAIL else v * dynamic_scale for k, v in dyn.items()}
    out["static"] = e.static_w * chips * time_s
    return out
