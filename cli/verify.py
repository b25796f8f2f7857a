"""`huzhu verify PROOF.json`: a member's proof checked offline, with nothing but the file (and, to
be sure the log was not rewritten, a head published since and its consistency proof)."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.output import JSON_OPTION, console, fail, print_json, table
from domain import proofs

FileArgument = Annotated[Path, typer.Argument(help="The proof, from /v1/me/charges/CYCLE/proof.")]


def verify_command(
    proof: FileArgument,
    head: Annotated[
        Path | None,
        typer.Option("--head", help="A head published since, from /v1/log/heads/latest."),
    ] = None,
    consistency: Annotated[
        Path | None,
        typer.Option(
            "--consistency",
            help="When --head is of another size: /v1/log/consistency?from=SIZE&to=SIZE.",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="The log's public key (64 hex digits) you trust, to pin it."),
    ] = None,
    member: Annotated[
        str | None, typer.Option("--member", help="Your member_ref: the proof must be yours.")
    ] = None,
    cycle: Annotated[
        int | None, typer.Option("--cycle", help="The cycle id the proof must be of.")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a proof of your charge: your leaf, its path to the cycle's root, the root's sums
    against the published totals, the cases, the cycle's entry in the log and its signed head.
    Exit 0 when every step holds, 1 when one does not."""
    checks = proofs.verify(
        _read(proof),
        trusted_key=_key(key),
        published_head=_read(head) if head else None,
        consistency=_consistency(consistency) if consistency else None,
        expected_member=member,
        expected_cycle=cycle,
    )
    holds = proofs.holds(checks)
    if as_json:
        print_json(
            {"holds": holds, "checks": [c.__dict__ | {"detail": _shown(c.detail)} for c in checks]}
        )
    else:
        rows = [["✓" if c.ok else "✗", c.name, _shown(c.detail)] for c in checks]
        console.print(table(f"proof {proof.name}", ["", "step", "detail"], rows))
        verdict = "[bold green]the proof holds[/]" if holds else "[bold red]it does not hold[/]"
        console.print(verdict)
    raise typer.Exit(0 if holds else 1)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror}", "give the path of the file you downloaded")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        fail(f"{path} is not JSON: {error}", "download it again; it must be the API's answer")


def _consistency(path: Path) -> list[str]:
    found = _read(path)
    proof = found.get("proof") if isinstance(found, dict) else None
    if not isinstance(proof, list):
        fail(f"{path} has no consistency proof", "save /v1/log/consistency?from=A&to=B as it is")
    return proof


def _shown(text: str) -> str:
    """A detail as the terminal can print it: a file's lone surrogates escaped, not raised."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _key(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        fail(f"{text!r} is not an Ed25519 public key", "give its 64 hex digits (key_id is not it)")
    return key
