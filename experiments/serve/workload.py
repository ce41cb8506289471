"""Requests a serving simulation answers: arrivals at a rate and prompt / output lengths,
generated from stated distributions or read from a trace file.

Arrivals are Poisson (exponential gaps) or bursty: gamma gaps with coefficient of variation
``cv`` > 1 at the same mean rate. A length is a fixed count or a distribution written as text:
``512``, ``uniform:128:1024``, ``lognormal:MEDIAN:SIGMA[:MAX]``, ``exp:MEAN[:MAX]``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isa.errors import TesseraError


class WorkloadError(TesseraError):
    """A length, rate or trace file the workload cannot use (named in the message)."""


@dataclass(frozen=True)
class Request:
    id: int
    arrival: float  # seconds
    prompt: int  # tokens
    output: int  # tokens to generate (the first comes with the prefill)
    prefix: str = ""  # shared-prefix id ("" = none)
    prefix_len: int = 0  # its tokens at the start of the prompt


# Synthetic traces, each a (prompt, output) pair of length texts. "chat" follows the
# conversation trace Splitwise (Patel et al., ISCA 2024) characterised from Azure's LLM
# service: prompt median ~1,020 tokens, output median ~129; heavy right tails, here lognormal
# with sigma 1.0 (prompts) and 0.8 (outputs), capped. "summarize" is a long-document shape
# (prompts of a few thousand tokens, outputs of a few hundred) chosen to stress prefill and
# KV capacity: its parameters are stated, not fitted to a trace.
TRACES = {
    "chat": ("lognormal:1020:1.0:8192", "lognormal:129:0.8:2048"),
    "summarize": ("lognormal:3000:0.5:12288", "lognormal:250:0.5:1024"),
}


@dataclass(frozen=True)
class Lengths:
    """A length distribution parsed from text (see the module docstring)."""

    kind: str
    a: float
    b: float = 0.0
    cap: int = 0
    text: str = ""

    @classmethod
    def parse(cls, text: str | int, what: str = "length") -> Lengths:
        s = str(text).strip()
        parts = s.split(":")
        try:
            if len(parts) == 1:
                n = int(parts[0])
                if n < 1:
                    raise ValueError
                return cls("fixed", n, text=s)
            kind, nums = parts[0], [float(p) for p in parts[1:]]
            if kind == "uniform" and len(nums) == 2 and 1 <= nums[0] <= nums[1]:
                return cls("uniform", nums[0], nums[1], text=s)
            if kind == "lognormal" and len(nums) in (2, 3) and nums[0] >= 1 and nums[1] >= 0:
                return cls("lognormal", nums[0], nums[1], int(nums[2]) if len(nums) == 3 else 0,
                           text=s)
            if kind == "exp" and len(nums) in (1, 2) and nums[0] >= 1:
                return cls("exp", nums[0], 0.0, int(nums[1]) if len(nums) == 2 else 0, text=s)
        except ValueError:
            pass
        raise WorkloadError(f"{what} '{s}': expected a count >= 1, uniform:A:B, "
                            f"lognormal:MEDIAN:SIGMA[:MAX] or exp:MEAN[:MAX]")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "fixed":
            x = np.full(n, self.a)
        elif self.kind == "uniform":
            x = rng.integers(int(self.a), int(self.b) + 1, n)
        elif self.kind == "lognormal":
            x = rng.lognormal(math.log(self.a), self.b, n)
        else:
            x = rng.exponential(self.a, n)
        x = np.maximum(1, np.rint(x)).astype(int)
        return np.minimum(x, self.cap) if self.cap else x


def arrivals(rate: float, n: int, rng: np.random.Generator, cv: float = 1.0) -> np.ndarray:
    """``n`` arrival times at ``rate`` per second: Poisson (cv = 1) or gamma gaps (cv != 1)."""
    if not rate > 0:
        raise WorkloadError(f"--rate {rate}: must be > 0 requests per second")
    if cv == 1.0:
        gaps = rng.exponential(1 / rate, n)
    else:
        shape = 1 / cv ** 2
        gaps = rng.gamma(shape, 1 / (rate * shape), n)
    return np.cumsum(gaps) - gaps[0]


def synthetic(rate: float, prompt: str | int, output: str | int, *, requests: int = 0,
              duration: float = 0.0, cv: float = 1.0, prefixes: int = 0, prefix_len: int = 0,
              seed: int = 0, max_tokens: int = 0) -> list[Request]:
    """Requests from distributions: ``requests`` of them, or as many as arrive in
    ``duration`` seconds. With ``prefixes`` > 0 each prompt starts with one of that many
    shared prefixes of ``prefix_len`` tokens (a system prompt), chosen uniformly. With
    ``max_tokens`` (the model's positions), a draw whose prompt + output exceed them is
    cut to fit: the output to at most half of them, the prompt to the rest."""
    if prompt in TRACES:
        prompt, output = TRACES[str(prompt)]
    p, o = Lengths.parse(prompt, "--prompt-len"), Lengths.parse(output, "--output-len")
    rng = np.random.default_rng(seed)
    if requests <= 0 and duration <= 0:
        raise WorkloadError("give --requests N or --duration SECONDS")
    n = requests if requests > 0 else max(1, int(rate * duration * 1.5) + 10)
    t = arrivals(rate, n, rng, cv)
    if requests <= 0:
        t = t[t < duration]
        n = len(t)
        if n == 0:
            raise WorkloadError(f"--duration {duration}: no request arrives in it at --rate "
                                f"{rate} (lengthen it)")
    plen, olen = p.sample(rng, n), o.sample(rng, n)
    if max_tokens > 1:
        olen = np.minimum(olen, max(1, max_tokens // 2))
        plen = np.minimum(plen, max_tokens - olen)
    which = rng.integers(0, prefixes, n) if prefixes > 0 else np.zeros(n, int)
    out = []
    for i in range(n):
        pl = min(prefix_len, int(plen[i]) - 1) if prefixes > 0 else 0
        out.append(Request(i, float(t[i]), int(plen[i]), int(olen[i]),
                           f"p{which[i]}" if pl > 0 else "", max(0, pl)))
    return out


COLUMNS = {"arrival": ("arrival_s", "arrival", "timestamp"),
           "prompt": ("prompt_tokens", "input_tokens", "prompt_len"),
           "output": ("output_tokens", "output_len", "generated_tokens"),
           "prefix": ("prefix_id",), "prefix_len": ("prefix_tokens", "prefix_len")}


def read_trace(path: Path, rate: float = 0.0, seed: int = 0, cv: float = 1.0) -> list[Request]:
    """Requests from a CSV or JSONL file: prompt and output tokens per row, arrival time in
    seconds (or, without one, arrivals drawn at ``rate``), optional shared-prefix id and its
    tokens. Column names accepted: see ``COLUMNS``."""
    import pandas as pd

    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            rows = []
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    rows.append(json.loads(line))
                    if not isinstance(rows[-1], dict):
                        raise WorkloadError(f"{path}:{n}: expected one JSON object per line, "
                                            f"got {type(rows[-1]).__name__}")
            df = pd.DataFrame(rows)
        else:
            df = pd.read_csv(path)
    except FileNotFoundError:
        raise WorkloadError(f"{path}: no such trace file") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WorkloadError(f"{path}: cannot read the trace ({first})") from None
    col = {k: next((c for c in names if c in df.columns), None) for k, names in COLUMNS.items()}
    for need in ("prompt", "output"):
        if col[need] is None:
            raise WorkloadError(f"{path}: no {need} column (one of "
                                f"{', '.join(COLUMNS[need])})")
    if col["arrival"] is None and not rate > 0:
        raise WorkloadError(f"{path}: no arrival column ({', '.join(COLUMNS['arrival'])}); "
                            f"give --rate to draw arrivals")
    n = len(df)
    if n == 0:
        raise WorkloadError(f"{path}: no requests in the trace")
    if col["arrival"] is not None:
        times = pd.to_numeric(df[col["arrival"]], errors="coerce").to_numpy(float)
    else:
        times = arrivals(rate, n, np.random.default_rng(seed), cv)
    out = []
    for i in range(n):
        line = i + 2 if path.suffix.lower() == ".csv" else i + 1
        try:
            p, o = int(df[col["prompt"]].iloc[i]), int(df[col["output"]].iloc[i])
            t = float(times[i])
            pre = str(df[col["prefix"]].iloc[i]) if col["prefix"] else ""
            pre = "" if pre in ("", "nan", "None") else pre
            pl = int(df[col["prefix_len"]].iloc[i]) if col["prefix_len"] and pre else 0
        except (TypeError, ValueError, OverflowError):
            raise WorkloadError(f"{path}: line {line}: lengths must be whole numbers") from None
        if p < 1 or o < 1 or not 0 <= t < math.inf or pl < 0 or pl > p:
            raise WorkloadError(f"{path}: line {line}: need prompt >= 1, output >= 1, a "
                                f"finite arrival >= 0 and 0 <= prefix tokens <= prompt")
        out.append(Request(i, t, p, o, pre, min(pl, p - 1)))
    out.sort(key=lambda r: (r.arrival, r.id))
    t0 = out[0].arrival if out else 0.0
    return [Request(r.id, r.arrival - t0, r.prompt, r.output, r.prefix, r.prefix_len)
            for r in out]
