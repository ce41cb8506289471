"""Simulate each distinct kernel once: results kept by what determines them, in memory and
on disk, shared by the processes of a sweep and by later runs.

A performance-mode simulation is a pure function of its programs, the chip (or system)
description, the run limits and the simulator's own code. The key is a digest of exactly
those: every instruction of every core (opcode and fields), the description's dataclasses,
the limits, and a digest of the source of ``isa/``, ``hardware/`` and ``simulator/`` (so
an edit of the model can never return a stale cost). A hit is therefore the same
``SimResult`` the simulation would give, to the bit; traced and functional runs are never
cached (their traces and memories are not kept).

Storage: SQLite (one table, key -> JSON), in WAL mode, each write its own transaction, so
concurrent writers (sweep workers) wait rather than corrupt, and a writer killed mid-write
leaves the previous state. Folder: ``--cache-dir`` or ``$TESSERA_CACHE_DIR`` or
``~/.cache/tessera``; ``--no-cache`` (``TESSERA_NO_CACHE=1``) turns it off; ``tessera cache
info|clear``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path

from isa.program import Program
from simulator.result import EngineStats, SimResult

FILE = "costs.sqlite"
ENV_DIR, ENV_OFF = "TESSERA_CACHE_DIR", "TESSERA_NO_CACHE"
CODE = ("isa", "hardware", "simulator")  # packages whose code decides a simulated cost


def default_folder() -> Path:
    return Path(os.environ.get(ENV_DIR) or Path.home() / ".cache" / "tessera")


def enabled() -> bool:
    return os.environ.get(ENV_OFF, "") not in ("1", "true", "yes")


@cache
def code_digest(packages: tuple[str, ...] = CODE,
                suffixes: tuple[str, ...] = ("*.py", "*.c")) -> str:
    """A digest of the simulator's code (or of the ``suffixes`` files of ``packages``): any
    edit changes every key."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.blake2b(digest_size=16)
    for pkg in packages:
        for path in sorted(p for suffix in suffixes for p in (root / pkg).rglob(suffix)):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def key(kind: str, description: object, programs: dict, extra: object) -> str:
    """The digest of one simulation: its kind, description, options (the L2 hit fractions
    among them), and its programs without their addresses — in performance mode timing
    never depends on an address (``simulator.engine.dedupe``) except through the L2 reuse
    model, whose hit fractions are in ``extra``; so the same kernel at other addresses (the
    next decode step's, another layer's) is the same simulation."""
    h = hashlib.blake2b(digest_size=20)
    h.update(code_digest().encode())
    h.update(kind.encode())
    h.update(repr(description).encode())
    h.update(repr(extra).encode())
    for where, p in sorted(programs.items()):
        h.update(repr(where).encode())
        h.update(program_digest(p))
    return h.hexdigest()


def program_digest(p: Program) -> bytes:
    """A program's instructions with their addresses zeroed, digested once per program
    object (``dedupe.identity``; the ranks of a tensor-parallel group share theirs)."""
    from simulator.engine.dedupe import identity

    return identity(p)


def to_json(r: SimResult) -> str:
    skip = ("trace", "trace_names", "memory", "link_trace")
    out = {f.name: getattr(r, f.name) for f in fields(r) if f.name not in skip}
    out["engines"] = {k: asdict(v) for k, v in r.engines.items()}
    out["races"] = list(r.races)
    return json.dumps(out)


def from_json(text: str) -> SimResult:
    d = json.loads(text)
    d["engines"] = {k: EngineStats(**v) for k, v in d["engines"].items()}
    d["races"] = tuple(d["races"])
    return SimResult(**d)


@dataclass
class Stats:
    hits: int = 0
    misses: int = 0
    answers: int = 0  # whole answers reused (``Memo``-kept rows of a validation)

    def since(self, before: Stats) -> Stats:
        return Stats(self.hits - before.hits, self.misses - before.misses,
                     self.answers - before.answers)

    def line(self) -> str:
        total = self.hits + self.misses
        text = (f"kernel-cost cache: {self.hits} of {total} simulations reused"
                if total else "kernel-cost cache: nothing simulated")
        return text + (f"; {self.answers} whole answers reused" if self.answers else "")


class CostCache:
    """Results by key: a dict in front of a SQLite file (or the dict alone)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.memory: dict[str, str] = {}
        self.stats = Stats()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None and self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.folder / FILE, timeout=60,
                                           isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS costs (key TEXT PRIMARY KEY, "
                                 "value TEXT NOT NULL)")
            except (OSError, sqlite3.Error):  # an unwritable folder: memory only
                self.folder, self._db = None, None
        return self._db

    def get(self, k: str) -> SimResult | None:
        text = self.get_text(k)
        result = None
        if text is not None:
            try:
                result = from_json(text)
            except (ValueError, KeyError, TypeError):  # an entry damaged outside Tessera
                self.memory.pop(k, None)  # simulated again and rewritten
        if result is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return result

    def put(self, k: str, result: SimResult) -> None:
        self.put_text(k, to_json(result))

    def get_text(self, k: str) -> str | None:
        text = self.memory.get(k)
        if text is None and (db := self._conn()) is not None:
            try:
                row = db.execute("SELECT value FROM costs WHERE key = ?", (k,)).fetchone()
            except sqlite3.Error:
                row = None
            text = row[0] if row else None
            if text is not None:
                self.memory[k] = text
        return text

    def put_text(self, k: str, text: str) -> None:
        self.memory[k] = text
        if (db := self._conn()) is not None:
            try:
                db.execute("INSERT OR REPLACE INTO costs (key, value) VALUES (?, ?)", (k, text))
            except sqlite3.Error:  # busy beyond the timeout, disk full: keep it in memory
                pass

    def info(self) -> dict:
        db = self._conn()
        keys = [k for (k,) in db.execute("SELECT key FROM costs")] if db else list(self.memory)
        memos = sum(k.startswith("memo:") for k in keys)
        size = sum(p.stat().st_size for p in self.folder.glob(FILE + "*")) \
            if self.folder else 0
        return {"folder": str(self.folder) if self.folder else None,
                "entries": len(keys) - memos, "decisions": memos, "bytes": size,
                "code": code_digest()}

    def clear(self) -> int:
        """Drop every entry (costs and decisions); how many costs there were."""
        n = self.info()["entries"]
        self.memory.clear()
        if (db := self._conn()) is not None:
            db.execute("DELETE FROM costs")
            db.execute("VACUUM")
        return n


class Memo:
    """Decisions worth keeping beside the costs (which tiling a simulation confirmed), as a
    small mapping of JSON values under a namespace (the chip, the code that decides)."""

    def __init__(self, store: CostCache, namespace: str) -> None:
        self.store, self.namespace = store, namespace

    def _key(self, k: str) -> str:
        return "memo:" + hashlib.blake2b((self.namespace + k).encode(),
                                         digest_size=20).hexdigest()

    def get(self, k: str) -> object | None:
        text = self.store.get_text(self._key(k))
        return None if text is None else json.loads(text)

    def __setitem__(self, k: str, value: object) -> None:
        self.store.put_text(self._key(k), json.dumps(value))


_CACHE: dict[tuple, CostCache] = {}


def counts() -> tuple[int, int, int]:
    """This process's (hits, misses, whole answers) of the cache (a worker has its own)."""
    s = current()
    return (s.stats.hits, s.stats.misses, s.stats.answers) if s is not None else (0, 0, 0)


def add_counts(delta: tuple[int, ...] | None) -> None:
    """Count a worker's hits, misses and answers as this process's (None: nothing to add)."""
    s = current()
    if s is not None and delta is not None:
        s.stats.hits += delta[0]
        s.stats.misses += delta[1]
        s.stats.answers += delta[2] if len(delta) > 2 else 0


def current() -> CostCache | None:
    """The cache the environment asks for (one per folder per process), or None."""
    if not enabled():
        return None
    folder = default_folder()
    if (str(folder), os.getpid()) not in _CACHE:
        _CACHE[(str(folder), os.getpid())] = CostCache(folder)
    return _CACHE[(str(folder), os.getpid())]
