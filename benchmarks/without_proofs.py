"""The close as it ran before proofs, for the reference run of the proofs' cost: the Celery app
(`celery -A benchmarks.without_proofs worker`) and the audit with the proof steps left out, and
nothing else changed. Never used outside the benchmarks."""

from domain.services import audit, proofs
from workers import app  # noqa: F401  (the app this module's worker runs)


def leave_out_proofs() -> None:
    proofs.prove_chunk = lambda *args: b""
    proofs.prove_cycle = lambda *args: None
    audit.recomputed = lambda *args: []


leave_out_proofs()
