"""Command line for operators: python -m sandbox hospital|payments --port N [--records FILE]."""

import argparse
from pathlib import Path

from sandbox.faults import Faults
from sandbox.server import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Run a sandbox stand-in for an outside service."
    )
    parser.add_argument("service", choices=["hospital", "payments"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--records", type=Path, help="hospital: JSON records file")
    parser.add_argument(
        "--failing",
        action="append",
        default=[],
        metavar="ACCOUNT",
        help="payments: an account whose debits and payouts fail (repeatable)",
    )
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--status-5xx-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if args.records and args.service != "hospital":
        parser.error("--records is for the hospital service")
    if args.failing and args.service != "payments":
        parser.error("--failing is for the payments service")
    faults = Faults(
        latency_ms=args.latency_ms, status_5xx_rate=args.status_5xx_rate, seed=args.seed
    )
    # uvicorn turns Ctrl-C into a clean shutdown itself.
    run(
        args.service,
        args.host,
        args.port,
        args.records,
        faults=faults,
        failing_accounts=set(args.failing),
    )


if __name__ == "__main__":
    main()
