"""Reading spec YAML files and command-line overrides into raw spec mappings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SHIPPED_SPECS = Path(__file__).parent / "specs"


class SpecFileError(ValueError):
    """A spec file is missing, unreadable or not a YAML mapping."""


def find_spec_file(name_or_path: str) -> Path:
    """A path as given, or the shipped spec of that name (``mad_core/specs/NAME.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SHIPPED_SPECS / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in SHIPPED_SPECS.glob("*.yaml")))
    raise SpecFileError(f"no spec file {name_or_path!r}; give a path to a YAML file or one "
                        f"of the shipped specs: {names}")


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`; a clear error for a parse error or a non-mapping."""
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecFileError(f"{path}: not valid YAML: {error}") from None
    except OSError as error:
        raise SpecFileError(f"{path}: cannot be read: {error.strerror}") from None
    if not isinstance(content, dict):
        raise SpecFileError(f"{path}: must hold a mapping of keys, got {type(content).__name__}")
    return content


def set_dotted(raw: dict[str, Any], dotted_key: str, value: Any) -> None:
    """raw['a']['b'] = value for dotted_key 'a.b', creating sections as needed."""
    *sections, key = dotted_key.split(".")
    target = raw
    for section in sections:
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise SpecFileError(f"--set {dotted_key}: {section} is not a section")
    target[key] = value


def apply_overrides(raw: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """A copy of raw with ``key=value`` assignments applied (values parsed as YAML)."""
    result = yaml.safe_load(yaml.safe_dump(raw))
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or not key:
            raise SpecFileError(f"--set {assignment!r}: expected KEY=VALUE, e.g. lam=0.8 "
                                f"or data.dim=10")
        set_dotted(result, key.strip(), yaml.safe_load(text))
    return result
