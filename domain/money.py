"""Money in whole fen (1 yuan = 100 fen): integer arithmetic only, Decimal just for printing."""

from decimal import Decimal, InvalidOperation

FEN_PER_YUAN = 100
BASIS_POINTS = 10_000


def yuan(fen: int) -> str:
    """Format fen as yuan with two decimals, e.g. 742 -> '7.42'."""
    return f"{Decimal(fen) / FEN_PER_YUAN:,.2f}"


def fen_from_yuan(amount: int | str | Decimal) -> int:
    """Exact conversion of a yuan amount to fen; refuses fractions of a fen."""
    try:
        fen = Decimal(str(amount)) * FEN_PER_YUAN
    except InvalidOperation as error:
        raise ValueError(f"{amount!r} is not an amount of yuan") from error
    if fen != fen.to_integral_value():
        raise ValueError(f"{amount} yuan is not a whole number of fen")
    return int(fen)


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding up, for positive denominators."""
    return -(-numerator // denominator)


def apply_rate(amount_fen: int, rate_bp: int) -> int:
    """amount x rate (in basis points), rounded half up to the fen."""
    return (amount_fen * rate_bp + BASIS_POINTS // 2) // BASIS_POINTS
