"""``valueSI``/``unitSI`` as SciCat's ``FormatPhysicalQuantitiesInterceptor`` adds them.

The backend converts ``{value, unit}`` with mathjs (``unit(value, unit).toSI()``) and only
when ``unit`` is a non-empty string; a unit mathjs does not know, or a non-numeric value,
keeps value and unit as they are (observed: 20 degC -> 293.15 K, 5 mm -> 0.005 m, 300 K -> 300 K).
This covers the units of neutron-scattering metadata; any other unit is kept verbatim.
"""

from __future__ import annotations

from typing import Any

__all__ = ["to_si"]

_PREFIXES = {
    "Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3,
    "h": 1e2, "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9,
    "p": 1e-12, "f": 1e-15,
}  # fmt: skip
#: base symbol -> (factor to SI, SI unit as mathjs prints it)
_BASE: dict[str, tuple[float, str]] = {
    "m": (1.0, "m"),
    "g": (1e-3, "kg"),
    "s": (1.0, "s"),
    "A": (1.0, "A"),
    "K": (1.0, "K"),
    "mol": (1.0, "mol"),
    "Hz": (1.0, "s^-1"),
    "N": (1.0, "N"),
    "Pa": (1.0, "Pa"),
    "J": (1.0, "J"),
    "W": (1.0, "W"),
    "V": (1.0, "V"),
    "T": (1.0, "T"),
    "eV": (1.602176634e-19, "J"),
    "bar": (1e5, "Pa"),
    "rad": (1.0, "rad"),
}
_WHOLE: dict[str, tuple[float, str]] = {
    "deg": (3.141592653589793 / 180, "rad"),
    "degree": (3.141592653589793 / 180, "rad"),
    "angstrom": (1e-10, "m"),
    "Å": (1e-10, "m"),
    "min": (60.0, "s"),
    "minute": (60.0, "s"),
    "h": (3600.0, "s"),
    "hour": (3600.0, "s"),
    "meter": (1.0, "m"),
    "second": (1.0, "s"),
    "kelvin": (1.0, "K"),
}
#: affine temperature units: SI = (value + offset) * factor
_TEMPERATURE = {"degC": (273.15, 1.0), "celsius": (273.15, 1.0), "degF": (459.67, 5 / 9)}


def _linear(unit: str) -> tuple[float, str] | None:
    if unit in _WHOLE:
        return _WHOLE[unit]
    if unit in _BASE:
        return _BASE[unit]
    for prefix, factor in _PREFIXES.items():
        if unit.startswith(prefix) and unit[len(prefix) :] in _BASE:
            base, si = _BASE[unit[len(prefix) :]]
            return factor * base, si
    return None


def _number(value: float) -> float | int:
    rounded = float(f"{value:.14g}")  # mathjs prints 293.15, not 293.15000000000003
    return int(rounded) if float(rounded).is_integer() and abs(rounded) < 2**53 else rounded


def to_si(value: Any, unit: Any) -> tuple[Any, Any]:
    """(valueSI, unitSI) for one quantity; unknown units and non-numbers stay as they are."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not isinstance(unit, str):
        return value, unit
    if unit in _TEMPERATURE:
        offset, factor = _TEMPERATURE[unit]
        return _number((value + offset) * factor), "K"
    found = _linear(unit)
    if found is None:
        return value, unit
    factor, si = found
    return _number(value * factor), si
