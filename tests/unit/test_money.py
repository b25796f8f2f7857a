"""Money in whole fen: yuan formatting, exact conversion, rounding up and the half-up rate."""

from decimal import Decimal

import pytest

from domain.money import apply_rate, ceil_div, fen_from_yuan, yuan


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (742, "7.42"),
        (5, "0.05"),
        (0, "0.00"),
        (18_800, "188.00"),
        (55_650_000_000, "556,500,000.00"),
    ],
)
def test_yuan_prints_two_decimals_with_thousands_separators(fen: int, text: str) -> None:
    assert yuan(fen) == text


@pytest.mark.parametrize(
    ("amount", "fen"),
    [(300_000, 30_000_000), ("7.42", 742), ("0.01", 1), ("7.420", 742), (Decimal("188"), 18_800)],
)
def test_fen_from_yuan_converts_exactly(amount: int | str | Decimal, fen: int) -> None:
    assert fen_from_yuan(amount) == fen


@pytest.mark.parametrize("amount", ["0.001", "7.415", Decimal("0.005")])
def test_fen_from_yuan_refuses_a_fraction_of_a_fen(amount: str | Decimal) -> None:
    with pytest.raises(ValueError, match="not a whole number of fen"):
        fen_from_yuan(amount)


@pytest.mark.parametrize(
    ("numerator", "denominator", "quotient"),
    [(55_620_000_000, 75_000_000, 742), (54_000_000, 10_800_000, 5), (1, 3, 1), (0, 7, 0)],
)
def test_ceil_div_rounds_up_and_leaves_exact_quotients_alone(
    numerator: int, denominator: int, quotient: int
) -> None:
    assert ceil_div(numerator, denominator) == quotient


@pytest.mark.parametrize(
    ("amount", "rate_bp", "result"),
    [
        (30_000_000, 800, 2_400_000),  # 8% of 300,000 yuan
        (50, 100, 1),  # 0.5 fen rounds half up
        (49, 100, 0),  # 0.49 fen rounds down
        (150, 100, 2),  # 1.5 fen rounds up
        (149, 100, 1),
        (7, 800, 1),  # 0.56 fen
        (6, 800, 0),  # 0.48 fen
    ],
)
def test_apply_rate_rounds_half_up_to_the_fen(amount: int, rate_bp: int, result: int) -> None:
    assert apply_rate(amount, rate_bp) == result
