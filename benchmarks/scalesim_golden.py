"""Regenerate the SCALE-Sim golden compute cycles in tests/simulator/scalesim_golden.py.

SCALE-Sim is not a dependency of Tessera; run this in a separate, throwaway environment
(SCALE-Sim 3.0.0 breaks on numpy 2 -- ``int()`` of a 1-element array -- so pin numpy < 2):

    python3 -m venv ../ss-venv
    ../ss-venv/bin/pip install scalesim==3.0.0 "numpy<2"
    ../ss-venv/bin/python benchmarks/scalesim_golden.py > golden.txt

(about 5 minutes, most of it the three 1x4096x4096 runs). It runs SCALE-Sim once per
(GEMM, array, dataflow) in GEMM mode (topology CSV ``Layer, M, N, K``: M output rows,
N output columns, K the reduction) with 64 MiB SRAMs and a 1000 words/cycle interface, so
that nothing stalls, and reads the "Total Cycles" column of COMPUTE_REPORT.csv (the compute
cycles; "Total Cycles (incl. prefetch)" adds the DRAM prefetch and is not used). It checks
"Stall Cycles" is 0 and prints the table as a Python literal to paste into
tests/simulator/scalesim_golden.py.

"Total Cycles" is SCALE-Sim's ``max(ofmap serviced cycle)``: the 0-based index of the last
cycle, i.e. one less than the number of cycles the array is busy. simulator/engine/systolic.py's
``matmul_cycles`` reproduces that number exactly (see docs/timing-systolic.md).
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
import tempfile
from pathlib import Path

CASES = [  # (m, k, n, rows, cols)
    (4, 4, 4, 4, 4),            # one fold, hand-checked in the tests
    (16, 16, 16, 16, 16),       # exactly the array: one fold
    (1, 1, 1, 4, 4),            # a single MAC on a partly used array
    (64, 64, 64, 16, 16),
    (100, 70, 33, 32, 32),      # nothing divides the array
    (1, 4096, 4096, 128, 128),  # a decode-step GEMV
    (1, 4096, 512, 128, 128),
    (512, 512, 512, 128, 128),
    (129, 257, 65, 16, 16),     # one past a multiple everywhere
    (48, 40, 24, 32, 8),        # non-square array, tall
    (48, 40, 24, 8, 32),        # non-square array, wide
    (7, 300, 45, 8, 32),
    (33, 9, 70, 32, 8),
    (3, 5, 7, 4, 6),            # odd rectangle on an odd array
    (250, 3, 17, 12, 20),
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
    """SCALE-Sim's "Total Cycles" for C[m,n] = A[m,k] @ W[k,n] on a rows x cols array."""
    from scalesim.scale_sim import scalesim

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "cfg.cfg").write_text(CONFIG.format(rows=rows, cols=cols, df=df))
        # SCALE-Sim's GEMM CSV: Layer, M, N, K -- N is the number of output columns
        # (filters), K the reduction (topology_utils.load_arrays_gemm)
        (d / "gemm.csv").write_text(f"Layer, M, N, K,\nl0, {m}, {n}, {k},\n")
        # custom layouts are off, but SCALE-Sim still reads a layout file
        (d / "layout.csv").write_text("Layer, a, b, c, d, e, f, g, h,\n"
                                      "l0, 1, 1, 1, 1, 1, 1, 1, 1,\n")
        sim = scalesim(save_disk_space=True, verbose=False, config=str(d / "cfg.cfg"),
                       topology=str(d / "gemm.csv"), layout=str(d / "layout.csv"),
                       input_type_gemm=True)
        with contextlib.redirect_stdout(io.StringIO()):
            sim.run_scale(top_path=str(d))
        report = next(d.rglob("COMPUTE_REPORT.csv"))
        row = next(csv.DictReader(report.open(), skipinitialspace=True))
        if int(float(row["Stall Cycles"])) != 0:
            raise RuntimeError(f"SCALE-Sim stalled on {(m, k, n, rows, cols, df)}: "
                               "SRAM or bandwidth not ample")
        return int(float(row["Total Cycles"]))


def main() -> None:
    import scalesim  # noqa: F401 -- fail early with a clear ImportError

    print("GOLDEN = [  # (m, k, n, rows, cols, dataflow, SCALE-Sim 'Total Cycles')")
    for m, k, n, rows, cols in CASES:
        for df in ("ws", "os", "is"):
            cycles = run(m, k, n, rows, cols, df)
            print(f"    ({m}, {k}, {n}, {rows}, {cols}, {df!r}, {cycles}),", flush=True)
            print(f"done {(m, k, n, rows, cols, df)}", file=sys.stderr, flush=True)
    print("]")


if __name__ == "__main__":
    main()
