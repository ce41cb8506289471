"""Regenerate the SCALE-Sim golden compute cycles used by tests/simulator/test_scalesim.py.

SCALE-Sim is not a dependency of Tessera: run this in a separate environment,
    python3 -m venv /tmp/ss && /tmp/ss/bin/pip install scalesim numpy
    PYTHONPATH=. /tmp/ss/bin/python benchmarks/scalesim_golden.py
It runs SCALE-Sim on each GEMM with SRAMs large enough that nothing stalls, reads
"Total Cycles" of COMPUTE_REPORT.csv, and prints the table as Python.
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
from pathlib import Path

CASES = [  # (m, k, n, rows, cols)
    (64, 64, 64, 16, 16), (100, 70, 33, 32, 32), (1, 4096, 512, 128, 128),
    (512, 512, 512, 128, 128), (129, 257, 65, 16, 16), (48, 40, 24, 32, 8),
    (16, 16, 16, 16, 16), (7, 300, 45, 8, 32),
]
CONFIG = """[general]
run_name = golden
[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 65536
FilterSramSzkB: 65536
OfmapSramSzkB: 65536
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth : 1000
Dataflow : {df}
MemoryBanks: 1
ReadRequestBuffer: 32
WriteRequestBuffer: 32
[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2
[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40
[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def run(m: int, k: int, n: int, rows: int, cols: int, df: str) -> int:
    from scalesim.scale_sim import scalesim

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "cfg.cfg").write_text(CONFIG.format(rows=rows, cols=cols, df=df))
        (d / "gemm.csv").write_text(f"Layer, M, N, K,\nl0, {m}, {n}, {k},\n")
        # a default layout file (custom layouts are off; SCALE-Sim still reads one)
        (d / "layout.csv").write_text("Layer, a, b, c, d, e, f, g, h,\n"
                                      "l0, 1, 1, 1, 1, 1, 1, 1, 1,\n")
        sim = scalesim(save_disk_space=True, verbose=False, config=str(d / "cfg.cfg"),
                       topology=str(d / "gemm.csv"), layout=str(d / "layout.csv"),
                       input_type_gemm=True)
        with contextlib.redirect_stdout(io.StringIO()):
            sim.run_scale(top_path=str(d))
        report = next(d.rglob("COMPUTE_REPORT.csv"))
        row = next(csv.DictReader(report.open(), skipinitialspace=True))
        return int(float(row["Total Cycles"]))


def main() -> None:
    print("GOLDEN = [  # (m, k, n, rows, cols, dataflow, SCALE-Sim compute cycles)")
    for m, k, n, rows, cols in CASES:
        for df in ("ws", "os", "is"):
            print(f"    ({m}, {k}, {n}, {rows}, {cols}, {df!r}, {run(m, k, n, rows, cols, df)}),")
    print("]")


if __name__ == "__main__":
    main()
