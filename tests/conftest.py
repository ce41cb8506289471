"""Test-session settings: the kernel-cost cache lives in a temporary folder of the session,
never in the user's ~/.cache; pieces of work run in this process (forking the test runner
for every phase costs more than it saves on small models) except where a test asks for
workers (``tests/mapper/test_forkmap.py``, ``tests/experiments/test_decode_steps.py``)."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TESSERA_CACHE_DIR", tempfile.mkdtemp(prefix="tessera-cache-"))
os.environ.setdefault("TESSERA_WORKERS", "1")
