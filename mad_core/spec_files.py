"""Reading spec YAML files and command-line overrides into raw spec mappings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SHIPPED_SPECS = Path(__file__).parent / "specs"
# Values a document may hold once YAML aliases are expanded. A spec or sweep file holds a
# few hundred; nested aliases ("billion laughs") reach billions from a few lines, and
# every later step that formats or copies the value would hang on them.
MAX_YAML_VALUES = 100_000


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


def expanded_size(value: Any, limit: int = MAX_YAML_VALUES) -> int:
    """How many values `value` holds with shared parts counted every time they are
    referenced (as YAML aliases expand), counting no further than just past `limit`.
    Each distinct container is walked once. Raises SpecFileError for a value that
    contains itself."""
    sizes: dict[int, int] = {}
    walking: set[int] = set()

    def size(item: Any) -> int:
        if not isinstance(item, (dict, list)):
            return 1
        key = id(item)
        if key in sizes:
            return sizes[key]
        if key in walking:
            raise SpecFileError("a YAML alias refers to a value that contains it; write the "
                                "values out")
        walking.add(key)
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                break
        walking.discard(key)
        sizes[key] = total
        return total

    return size(value)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text as Python values (safe types only), refusing documents whose aliases
    expand past MAX_YAML_VALUES values."""
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecFileError(f"{where}: not valid YAML: {error}") from None
    try:
        too_large = expanded_size(content) > MAX_YAML_VALUES
    except SpecFileError as error:
        raise SpecFileError(f"{where}: {error}") from None
    if too_large:
        raise SpecFileError(f"{where}: expands to more than {MAX_YAML_VALUES:,} values through "
                            f"YAML aliases (&anchor, *alias); write the values out")
    return content


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`; a clear error for unreadable or non-UTF-8 files, parse
    errors, alias bombs and non-mappings."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SpecFileError(f"{path}: cannot be read: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecFileError(f"{path}: not UTF-8 text (byte {error.start} is "
                            f"0x{data[error.start]:02x}); save it as UTF-8") from None
    content = parse_yaml(text, str(path))
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
        set_dotted(result, key.strip(), parse_yaml(text, f"--set {key.strip()}"))
    return result
