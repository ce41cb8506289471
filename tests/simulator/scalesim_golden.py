"""SCALE-Sim's compute cycles for one array with ample SRAM: the golden values for
tests/simulator/test_systolic.py.

Produced by SCALE-Sim 3.0.0 (PyPI "scalesim", run with numpy 1.26.4 in its own throwaway
venv; it is not a Tessera dependency) with

    python3 -m venv ../ss-venv
    ../ss-venv/bin/pip install scalesim==3.0.0 "numpy<2"
    ../ss-venv/bin/python benchmarks/scalesim_golden.py

Each value is "Total Cycles" of COMPUTE_REPORT.csv (GEMM mode, 64 MiB SRAMs, 0 stall cycles):
the 0-based index of the last busy cycle, which simulator.engine.systolic.matmul_cycles returns as is.
"""

GOLDEN = [  # (m, k, n, rows, cols, dataflow, SCALE-Sim 'Total Cycles')
    (4, 4, 4, 4, 4, 'ws', 13),
    (4, 4, 4, 4, 4, 'os', 9),
    (4, 4, 4, 4, 4, 'is', 13),
    (16, 16, 16, 16, 16, 'ws', 61),
    (16, 16, 16, 16, 16, 'os', 45),
    (16, 16, 16, 16, 16, 'is', 61),
    (1, 1, 1, 4, 4, 'ws', 10),
    (1, 1, 1, 4, 4, 'os', 6),
    (1, 1, 1, 4, 4, 'is', 10),
    (64, 64, 64, 16, 16, 'ws', 1759),
    (64, 64, 64, 16, 16, 'os', 1503),
    (64, 64, 64, 16, 16, 'is', 1759),
    (100, 70, 33, 32, 32, 'ws', 1163),
    (100, 70, 33, 32, 32, 'os', 1055),
    (100, 70, 33, 32, 32, 'is', 1523),
    (1, 4096, 4096, 128, 128, 'ws', 392191),
    (1, 4096, 4096, 128, 128, 'os', 139199),
    (1, 4096, 4096, 128, 128, 'is', 143295),
    (1, 4096, 512, 128, 128, 'ws', 49023),
    (1, 4096, 512, 128, 128, 'os', 17399),
    (1, 4096, 512, 128, 128, 'is', 28607),
    (512, 512, 512, 128, 128, 'ws', 14303),
    (512, 512, 512, 128, 128, 'os', 12255),
    (512, 512, 512, 128, 128, 'is', 14303),
    (129, 257, 65, 16, 16, 'ws', 14874),
    (129, 257, 65, 16, 16, 'os', 12914),
    (129, 257, 65, 16, 16, 'is', 16982),
    (48, 40, 24, 32, 8, 'ws', 707),
    (48, 40, 24, 32, 8, 'os', 467),
    (48, 40, 24, 32, 8, 'is', 1127),
    (48, 40, 24, 8, 32, 'ws', 469),
    (48, 40, 24, 8, 32, 'os', 467),
    (48, 40, 24, 8, 32, 'is', 699),
    (7, 300, 45, 8, 32, 'ws', 4027),
    (7, 300, 45, 8, 32, 'os', 675),
    (7, 300, 45, 8, 32, 'is', 3457),
    (33, 9, 70, 32, 8, 'ws', 926),
    (33, 9, 70, 32, 8, 'os', 845),
    (33, 9, 70, 32, 8, 'is', 699),
    (3, 5, 7, 4, 6, 'ws', 59),
    (3, 5, 7, 4, 6, 'os', 25),
    (3, 5, 7, 4, 6, 'is', 37),
    (250, 3, 17, 12, 20, 'ws', 291),
    (250, 3, 17, 12, 20, 'os', 692),
    (250, 3, 17, 12, 20, 'is', 766),
]
