"""Test-session settings: the kernel-cost cache lives in a temporary folder of the session,
never in the user's ~/.cache."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TESSERA_CACHE_DIR", tempfile.mkdtemp(prefix="tessera-cache-"))
