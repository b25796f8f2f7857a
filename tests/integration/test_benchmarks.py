"""The benchmarks keep working: each runs at a tiny scale and reports its figure and reference
(the speed goals themselves are judged by `python -m benchmarks` at full scale, not here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(
    ("backend", "proofs"), [("postgresql", True), ("postgresql", False), ("sqlite", True)]
)
def test_the_charging_benchmark_measures_both_sides(backend, proofs, postgres_admin, redis_url):
    servers = {"HUZHU_BENCH_PG": postgres_admin, "HUZHU_BENCH_REDIS": redis_url}
    command = [sys.executable, "-m", "benchmarks.charging", "--backend", backend]
    done = subprocess.run(
        [*command, "--members", "3000", *([] if proofs else ["--without-proofs"])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=os.environ | servers,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout)
    assert run["members"] == 3000 and run["backend"] == backend
    assert run["reference"] > 0 and run["charging"] > 0 and run["close"] >= run["charging"]
    assert 0 < run["peak_rss_mb"] < 300
    assert run["proofs"] is proofs and 0 < run["audit"] < run["close"]
    # With proofs: what they store and a member's proof on request; without, neither.
    assert (run["proof_kb"] > 0 and 0 < run["proof_p50_ms"] <= run["proof_p99_ms"]) is proofs


def test_the_charges_plan_shows_a_payers_charges_read_from_the_partitions_key(
    postgres_admin, redis_url
):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.charges_plan", "--members", "3000"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=os.environ | {"HUZHU_BENCH_PG": postgres_admin, "HUZHU_BENCH_REDIS": redis_url},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 charge lines for B000000009 and family" in done.stdout
    charges = done.stdout.split("SELECT charge.cycle_id", 1)[1].split("\n\n", 1)[0]
    assert "charge_c1_pkey" in charges and "Seq Scan" not in charges


def test_the_sqlite_goal_is_judged_on_the_median_of_three_runs():
    command = ["--only", "sqlite", "--sqlite-members", "3000", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *command],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: a goal missed at this toy size
    [result] = [json.loads(line) for line in done.stdout.splitlines()]
    assert result["benchmark"].startswith("charging 3,000 members (SQLite)")
    ratios = [float(r) for r in result["detail"].split("whose ratios were ")[1].split(", ")]
    assert len(ratios) == 3 and ratios == sorted(ratios)
    assert result["ratio"] == ratios[1]


def test_the_api_benchmark_measures_four_endpoints_on_one_uvicorn(postgres_admin, redis_url):
    servers = {"HUZHU_BENCH_PG": postgres_admin, "HUZHU_BENCH_REDIS": redis_url}
    command = ["--only", "api", "--api-requests", "200", "--api-members", "1100", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *command],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=os.environ | servers,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: a goal missed at this toy size
    reads, writes = [json.loads(line) for line in done.stdout.splitlines()]
    assert reads["benchmark"].startswith("GET announcement (30 cases, 1,100 charges behind it)")
    assert writes["benchmark"].startswith("POST /v1/claims")
    for result in (reads, writes):
        assert result["figure"] > 0 and result["reference"] > 0 and result["goal"] == 0.5
        for endpoint in result["endpoints"]:
            assert endpoint["requests"] == 160  # 200, less the warm-up's 40
            assert 0 < endpoint["p50_ms"] <= endpoint["p99_ms"]
            assert endpoint["requests_per_s"] > 0 and endpoint["server_cpu_ms_per_request"] > 0
    assert [e["endpoint"] for e in reads["endpoints"] + writes["endpoints"]] == [
        "GET /v1/plans/critical-illness/announcement",
        "GET /bench/static (constant dict)",
        "POST /v1/claims",
        "POST /bench/reference (one row, one message)",
    ]
