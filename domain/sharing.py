"""The share formula, pure: what every sharing member pays for a cycle's cases, with the caps.

share = (aid + fee - carried surplus) / sharing members, rounded up to the fen, never below 1 fen,
where each case can ask each member for at most the plan's per-patient cap; the platform covers
what the per-patient cap cuts off, and (per member) what the annual cap cuts off. In a plan
winding down the platform pays the whole of what members would have shared (`platform_pays`).
"""

from dataclasses import dataclass

from domain.money import apply_rate, ceil_div


@dataclass(frozen=True)
class ShareFigures:
    sharing_members: int
    cases: int
    aid_fen: int
    fee_fen: int
    surplus_in_fen: int
    # What the cases may ask of members once the per-patient cap is applied.
    collectable_fen: int
    # What the per-patient cap cut off; the platform pays it.
    cap_subsidy_fen: int
    share_fen: int
    surplus_out_fen: int
    # What the platform pays in the members' place (a plan winding down), else 0.
    platform_share_fen: int = 0


def compute_share(
    case_amounts_fen: list[int],
    sharing_members: int,
    surplus_in_fen: int,
    fee_rate_bp: int,
    per_patient_cap_fen: int,
    platform_pays: bool = False,
) -> ShareFigures:
    """The cycle's share per member and the figures the books need; when the platform pays, no
    member is charged and the platform covers the cycle, net of the surplus carried in."""
    if sharing_members < 0 or surplus_in_fen < 0 or any(a <= 0 for a in case_amounts_fen):
        raise ValueError("members and surplus must be >= 0 and every case amount > 0")
    aid = sum(case_amounts_fen)
    fee = sum(apply_rate(amount, fee_rate_bp) for amount in case_amounts_fen)
    if platform_pays:
        # No member is charged, so no cap applies: the platform pays the cycle in full, net
        # of the surplus carried in (used up first).
        needed = aid + fee - surplus_in_fen
        return ShareFigures(
            sharing_members=sharing_members,
            cases=len(case_amounts_fen),
            aid_fen=aid,
            fee_fen=fee,
            surplus_in_fen=surplus_in_fen,
            collectable_fen=aid + fee,
            cap_subsidy_fen=0,
            share_fen=0,
            surplus_out_fen=max(0, -needed),
            platform_share_fen=max(0, needed),
        )
    # Each case is capped on its own: no member pays more than the cap for any one patient.
    collectable = sum(
        min(amount + apply_rate(amount, fee_rate_bp), per_patient_cap_fen * sharing_members)
        for amount in case_amounts_fen
    )
    needed = collectable - surplus_in_fen
    # Rounding up also makes any positive need at least 1 fen ("不足1分按1分收取").
    share = ceil_div(needed, sharing_members) if needed > 0 and sharing_members else 0
    return ShareFigures(
        sharing_members=sharing_members,
        cases=len(case_amounts_fen),
        aid_fen=aid,
        fee_fen=fee,
        surplus_in_fen=surplus_in_fen,
        collectable_fen=collectable,
        cap_subsidy_fen=aid + fee - collectable,
        share_fen=share,
        surplus_out_fen=share * sharing_members - needed,
    )


def member_charge(share_fen: int, paid_this_year_fen: int, annual_cap_fen: int) -> int:
    """What one member is charged: the share, cut so the year's total stays within the cap.

    The platform covers the difference (share - charge). The charging SQL mirrors this exactly.
    """
    return max(0, min(share_fen, annual_cap_fen - paid_this_year_fen))


def annual_cap_can_bind(
    plan_shares_this_year_fen: int, share_fen: int, annual_cap_fen: int
) -> bool:
    """Whether any member could reach the annual cap this cycle.

    Every member pays the same share, so no member has paid more than the plan's shares this year;
    while those stay within the cap, no per-member history is needed.
    """
    return plan_shares_this_year_fen + share_fen > annual_cap_fen
