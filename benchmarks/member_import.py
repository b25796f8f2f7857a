"""Benchmark: `huzhu members import` of a large CSV on PostgreSQL against a raw `COPY` of the
same file into a table shaped like `member`."""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks.common import Result, children_peak_rss_mb, scratch_database, stopwatch
from broker.migrate import upgrade
from domain.db import make_engine

GOAL = 0.3
COLUMNS = ["member_ref", "plan", "birth_date", "sex", "province", "joined_at", "payer_ref", "name"]
# fmt: off
PROVINCES = [
    "北京", "天津", "河北", "山西", "内蒙古", "辽宁", "吉林", "黑龙江", "上海", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "广西", "海南", "重庆", "四川",
    "贵州", "云南", "西藏", "陕西", "甘肃", "青海", "宁夏", "新疆",
]
# fmt: on
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
FAMILY_SHARE = 0.1  # about one row in ten is a child or parent paid for by the row's head
NAMED_SHARE = 0.5
FIRST_JOIN = date(2025, 1, 1)


def write_members(path: Path, members: int, seed: int = 5) -> None:
    """A CSV of `members` valid enrolments: mostly the critical-illness plan, some seniors,
    and families enrolled together, the payer's row just before the rows it pays for."""
    rng = random.Random(seed)
    head = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(COLUMNS) + "\n")
        for number in range(members):
            family = number > 0 and rng.random() < FAMILY_SHARE
            head = head if family else number
            handle.write(_member_line(rng, number, f"M{head:08d}" if family else ""))


def _member_line(rng: random.Random, number: int, payer: str) -> str:
    joined = FIRST_JOIN + timedelta(days=rng.randrange(365))
    senior = rng.random() < 0.15
    # Ages well inside each plan's joining ages: 60 days to 58 years, or 60 to 69 years.
    days_old = rng.randrange(60 * 365 + 30, 70 * 365) if senior else rng.randrange(60, 58 * 365)
    name = rng.choice(SURNAMES) + rng.choice(GIVEN) if rng.random() < NAMED_SHARE else ""
    moment = datetime(joined.year, joined.month, joined.day, rng.randrange(24), rng.randrange(60))
    return (
        f"M{number:08d},{'senior-cancer' if senior else 'critical-illness'},"
        f"{joined - timedelta(days=days_old)},{'MF'[number & 1]},{rng.choice(PROVINCES)},"
        f"{moment.isoformat()}+08:00,{payer},{name}\n"
    )


def raw_copy(url: str, csv_file: Path) -> float:
    """Seconds for PostgreSQL alone to load the file into a table shaped like `member`."""
    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        connection.execute("CREATE TABLE member_ref_copy (LIKE member INCLUDING ALL)")
        # The file's payer_ref has no column in `member` (the import resolves it to payer_id);
        # the reference keeps it as text, and fills jury_certified as the import does.
        connection.execute("ALTER TABLE member_ref_copy ADD COLUMN payer_ref text")
        connection.execute("ALTER TABLE member_ref_copy ALTER jury_certified SET DEFAULT false")
        connection.commit()
        with stopwatch() as took, csv_file.open("rb") as handle:
            with connection.cursor().copy(
                f"COPY member_ref_copy ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv, HEADER)"
            ) as copy:
                while block := handle.read(1 << 20):
                    copy.write(block)
            connection.commit()
    return took[0]


def our_import(url: str, csv_file: Path) -> tuple[float, float, dict]:
    """Seconds for `huzhu members import FILE --json`, run as an operator runs it (start-up
    included), the CPU seconds of its Python process, and its report."""
    env = dict(os.environ, HUZHU_DATABASE_URL=url)
    before = _children_cpu()
    with stopwatch() as took:
        result = subprocess.run(
            [sys.executable, "-m", "cli", "members", "import", str(csv_file), "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        raise RuntimeError(f"the import failed ({result.returncode}): {result.stderr[-2000:]}")
    return took[0], _children_cpu() - before, json.loads(result.stdout)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(members: int = 1_000_000) -> list[Result]:
    with tempfile.TemporaryDirectory() as folder, scratch_database("member_import") as url:
        csv_file = Path(folder) / "members.csv"
        write_members(csv_file, members)
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        # The machine may be shared: its load is part of the result.
        load = os.getloadavg()[0]
        reference = raw_copy(url, csv_file)
        figure, cpu, report = our_import(url, csv_file)
    if report["imported"] != members or report["refused"]:
        raise RuntimeError(f"imported {report['imported']} of {members} valid rows")
    return [
        Result(
            benchmark=f"importing {members:,} members from CSV (PostgreSQL)",
            figure=figure,
            reference=reference,
            goal=GOAL,
            detail=(
                f"huzhu members import {members / figure:,.0f} rows/s, "
                f"raw COPY {members / reference:,.0f} rows/s; import's Python process "
                f"{cpu:.1f} CPU s, peak RSS {children_peak_rss_mb():.0f} MB; "
                f"load average {load:.1f} on {os.cpu_count()} CPUs at the start"
            ),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=1_000_000)
    for result in run(parser.parse_args().members):
        print(json.dumps(result.as_dict(), ensure_ascii=False))  # one object a line


if __name__ == "__main__":
    main()
