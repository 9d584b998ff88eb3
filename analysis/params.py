"""Typed trial parameters from MLflow's strings.

MLflow stores every parameter as a string ("0.85", "100", "None", "True"). The sweeps
package logs the resolved trial spec flattened with dotted keys (docs/tracking.md), so
each key's type is the one mad_core's spec declares for it; keys the spec does not
declare (a newer spec version, a foreign run) are parsed as int, float, bool or left
as text, in that order.
"""

from __future__ import annotations

from typing import Any

from mad_core.spec import (COMMON_DATA_FIELDS, METRIC_FIELDS, MODEL_FIELDS, SOURCE_FIELDS,
                           STOP_FIELDS, TOP_FIELDS, Field)

NULL_TEXTS = ("None", "null", "")
TRUE_TEXTS, FALSE_TEXTS = ("True", "true"), ("False", "false")


def spec_field_kinds() -> dict[str, type]:
    """{dotted key: int, float, bool or str} for every key a trial spec can have."""
    kinds = {key: field.kind for key, field in TOP_FIELDS.items()}
    sections: list[tuple[str, dict[str, Field]]] = [("data", COMMON_DATA_FIELDS),
                                                    ("metrics", METRIC_FIELDS),
                                                    ("stop", STOP_FIELDS)]
    sections += [("data", fields) for fields in SOURCE_FIELDS.values()]
    sections += [("model_options", fields) for fields in MODEL_FIELDS.values()]
    for section, fields in sections:
        kinds.update({f"{section}.{key}": field.kind for key, field in fields.items()})
    return kinds


FIELD_KINDS = spec_field_kinds()


class ParameterError(ValueError):
    """A logged parameter's text does not parse as the type its spec field declares."""


def _parse_bool(text: str) -> bool:
    if text in TRUE_TEXTS:
        return True
    if text in FALSE_TEXTS:
        return False
    raise ValueError(text)


def parse_undeclared(text: str) -> Any:
    """A parameter no spec field declares: int, float, bool, None or the text itself."""
    if text in NULL_TEXTS:
        return None
    for parse in (int, float, _parse_bool):
        try:
            return parse(text)
        except ValueError:
            continue
    return text


def parse_parameter(key: str, text: str) -> Any:
    """The typed value of a logged parameter (None for a null), by its spec field's type.

    Raises:
        ParameterError: text that is not a value of the declared type.
    """
    kind = FIELD_KINDS.get(key)
    if kind is None:
        return parse_undeclared(text)
    if text in NULL_TEXTS:
        return None
    if kind is list:
        return text  # kept as its text ("[1, 2]"): hashable, so trials group by it
    try:
        if kind is bool:
            return _parse_bool(text)
        if kind is int:
            number = float(text)  # "100" and "100.0" both mean 100
            if not number.is_integer():
                raise ValueError(text)
            return int(number)
        return kind(text)
    except ValueError:
        raise ParameterError(f"parameter {key} = {text!r} is not a {kind.__name__}, as the "
                             f"trial spec declares; was the run logged by `mad sweep`?") from None
