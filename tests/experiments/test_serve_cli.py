"""``tessera serve`` as a user runs it: figures, files, and one-line errors."""

from __future__ import annotations

import json

import pandas as pd

from tests.experiments.helpers import one_line_error, run

TINY = ("--model", "tiny-llama", "--chip", "edge", "--prompt-len", "uniform:8:40",
        "--output-len", "uniform:2:16")
KEYS = ("throughput_tok_s", "ttft_p50_s", "ttft_p99_s", "tbt_p50_s", "tbt_p99_s",
        "goodput_req_s", "energy_per_token_j", "usd_per_mtok")


def test_serve_prints_figures_and_writes_tables(capsys, tmp_path) -> None:  # noqa: ANN001
    code, out, err = run(capsys, "serve", *TINY, "--rate", "200", "--requests", "60",
                         "--slo-ttft", "0.01", "--out", str(tmp_path), "--json")
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    for k in KEYS:
        assert isinstance(doc[k], float) and doc[k] == doc[k], k
    assert doc["requests"] == 60 and "TTFT" in out and "goodput" in out
    req = pd.read_csv(tmp_path / "requests.csv")
    assert len(req) == 60 and (req["generated"] == req["output_tokens"]).all()
    its = pd.read_csv(tmp_path / "iterations.csv")
    assert its["time_s"].sum() <= doc["duration_s"] + 1e-9


def test_tensor_parallel_and_disaggregated_replicas(capsys, tmp_path) -> None:  # noqa: ANN001
    code, out, err = run(capsys, "serve", "--model", "tiny-llama", "--system", "edge-ring16",
                         "--tp", "2", "--disaggregate", "1:2", "--prompt-len", "32",
                         "--output-len", "8", "--rate", "100", "--requests", "30",
                         "--out", str(tmp_path), "--json")
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["transfers"] == 30 and doc["chips"] == 6
    req = pd.read_csv(tmp_path / "requests.csv")
    assert set(req["replica"]) == {0} and set(req["decode_replica"]) <= {1, 2}
    assert (req["transfer_s"] > 0).all()


def test_find_capacity(capsys, tmp_path) -> None:  # noqa: ANN001
    code, out, err = run(capsys, "serve", *TINY, "--requests", "80", "--rate", "20000",
                         "--slo-ttft", "0.002", "--find-capacity", "--probe-seconds", "0.02",
                         "--out", str(tmp_path),
                         "--json")
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    probes = pd.read_csv(tmp_path / "capacity.csv")
    ok = probes[probes["meets"]]
    assert doc["capacity_req_s"] == ok["rate"].max()
    assert (probes[~probes["meets"]]["rate"] > doc["capacity_req_s"]).all()


def test_a_trace_file(capsys, tmp_path) -> None:  # noqa: ANN001
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens,prefix_id,prefix_tokens\n"
                     "0.0,40,4,a,32\n0.5,40,4,a,32\n1.0,20,3,,0\n")
    code, out, err = run(capsys, "serve", "--model", "tiny-llama", "--chip", "edge",
                         "--trace", str(trace), "--prefix-cache", "--out", str(tmp_path),
                         "--json")
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["requests"] == 3 and doc["prefix_hit_rate"] == 32 / 100


def test_user_errors_are_one_line(capsys, tmp_path) -> None:  # noqa: ANN001
    o = ("--out", str(tmp_path))
    one_line_error(*run(capsys, "serve", *TINY[:4], "--prompt-len", "lognormal:x", *o)[::2],
                   "--prompt-len")
    one_line_error(*run(capsys, "serve", *TINY, "--disaggregate", "1:1", *o)[::2],
                   "--system")
    one_line_error(*run(capsys, "serve", *TINY, "--disaggregate", "2", *o)[::2],
                   "--disaggregate")
    one_line_error(*run(capsys, "serve", *TINY, "--pp", "2", *o)[::2], "--pp")
    one_line_error(*run(capsys, "serve", *TINY, "--rate", "0", *o)[::2], "--rate")
    for flag, value in (("--burstiness", "0"), ("--lifetime-years", "0"), ("--swap-gb", "-1"),
                        ("--prefixes", "-2"), ("--usd-per-kwh", "-1"), ("--memory-util", "2"),
                        ("--probe-seconds", "0")):
        one_line_error(*run(capsys, "serve", *TINY, flag, value, *o)[::2], flag)
    one_line_error(*run(capsys, "serve", *TINY, "--requests", "2000000000", *o)[::2],
                   "--max-requests")
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,2\n1,ten,2\n")
    one_line_error(*run(capsys, "serve", *TINY[:4], "--trace", str(bad), *o)[::2],
                   "bad.csv", "line 3")
    one_line_error(*run(capsys, "serve", "--model", "llama3-70b", "--chip", "h100", *o)[::2],
                   "KV cache")


def test_pipeline_parallel_replicas(capsys, tmp_path) -> None:  # noqa: ANN001
    code, out, err = run(capsys, "serve", "--model", "tiny-llama", "--system", "edge-ring16",
                         "--tp", "2", "--pp", "2", "--replicas", "2", "--prompt-len", "32",
                         "--output-len", "8", "--rate", "100", "--requests", "30",
                         "--out", str(tmp_path), "--json")
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["chips"] == 8 and doc["requests"] == 30
    one_line_error(*run(capsys, "serve", "--model", "tiny-llama", "--system", "edge-ring16",
                        "--tp", "4", "--pp", "2", "--replicas", "3", "--out",
                        str(tmp_path))[::2], "24 chips")
