"""The chart of accounts: every ledger account of a plan, what it means and which side it sits on.

An entry moves `amount` from its credit account to its debit account; an account's balance is its
debits less its credits. Assets (money the plan has or is owed) carry debit balances; liabilities,
income and the platform's funding carry credit balances; the cycle's pool is a clearing account
that every close leaves at zero.
"""

from dataclasses import dataclass

ASSET, LIABILITY, INCOME, EXPENSE, EQUITY, CLEARING = (
    "asset",
    "liability",
    "income",
    "expense",
    "equity",
    "clearing",
)
# The side an account of each kind normally sits on: +1 debit, -1 credit.
NORMAL_SIDE = {ASSET: 1, EXPENSE: 1, CLEARING: 1, LIABILITY: -1, INCOME: -1, EQUITY: -1}


@dataclass(frozen=True)
class Account:
    prefix: str
    kind: str
    meaning: str


CHART = {
    a.prefix: a
    for a in (
        Account("cash", ASSET, "the plan's money at the payment provider"),
        Account("receivable", ASSET, "members' charges not yet collected"),
        Account("subsidy-due", ASSET, "what the platform covers under the caps, not yet paid in"),
        Account("aid-payable", LIABILITY, "aid of settled cases not yet paid to the patients"),
        Account("surplus", LIABILITY, "over-collection carried to the next cycle (结余)"),
        Account("fee-income", INCOME, "the 8% management fee, earned from the members' shares"),
        Account("platform-funding", EQUITY, "money the platform put in when cash fell short"),
        Account("refunds", EXPENSE, "shares refunded after a waiting-period illness"),
        Account("pool", CLEARING, "one cycle's sharing: what is owed in against what is owed out"),
    )
}


def cash(plan: str) -> str:
    return f"cash:{plan}"


def receivable(plan: str) -> str:
    return f"receivable:{plan}"


def subsidy_due(plan: str) -> str:
    return f"subsidy-due:{plan}"


def aid_payable(plan: str) -> str:
    return f"aid-payable:{plan}"


def surplus(plan: str) -> str:
    return f"surplus:{plan}"


def fee_income(plan: str) -> str:
    return f"fee-income:{plan}"


def platform_funding(plan: str) -> str:
    return f"platform-funding:{plan}"


def refunds(plan: str) -> str:
    return f"refunds:{plan}"


def pool(plan: str, cycle_id: int) -> str:
    return f"pool:{plan}:{cycle_id}"


def account_of(name: str) -> Account | None:
    """The chart's entry for an account name, or None when the name is not in the chart."""
    prefix, _, rest = name.partition(":")
    return CHART.get(prefix) if rest else None


def natural_balance(name: str, debit_balance: int) -> int:
    """The balance as an accountant reads it: positive on the account's normal side."""
    account = account_of(name)
    return debit_balance * (NORMAL_SIDE[account.kind] if account else 1)
