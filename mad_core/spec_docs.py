"""docs/spec.md's key tables, generated from the declarations (spec fields, data
sources, each model's OPTIONS), so the documentation cannot drift from the code.

    python -m mad_core.spec_docs           # exit 1 and say so if docs/spec.md is stale
    python -m mad_core.spec_docs --write   # rewrite the generated blocks in place

A generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mad_core.fields import REQUIRED, Field
from mad_core.spec import (COMMON_DATA_FIELDS, METRIC_FIELDS, MODEL_FIELDS, SOURCE_FIELDS,
                           STOP_FIELDS, TOP_FIELDS)

DOC = Path(__file__).resolve().parent.parent / "docs" / "spec.md"
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z0-9_.]+) -->\n).*?(<!-- end generated -->)", re.S)


def _default(field: Field) -> str:
    if field.default is REQUIRED:
        return "required"
    if field.default is None:
        return "null"
    if isinstance(field.default, str):
        return field.default or '""'
    return str(field.default).replace("'", "")


def key_table(fields: dict[str, Field]) -> str:
    """A markdown table of the keys: key, allowed values, default, meaning."""
    if not fields:
        return "no further keys.\n"
    rows = ["| key | allowed | default | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| `{key}` | {field.allowed()} | {_default(field)} | {field.help} |"
             for key, field in fields.items()]
    return "\n".join(rows) + "\n"


def tables() -> dict[str, str]:
    """Block name -> generated table."""
    blocks = {"top": key_table(TOP_FIELDS), "data": key_table(COMMON_DATA_FIELDS),
              "metrics": key_table(METRIC_FIELDS), "stop": key_table(STOP_FIELDS)}
    blocks |= {f"data.{name}": key_table(fields) for name, fields in SOURCE_FIELDS.items()}
    blocks |= {f"model.{name}": key_table(fields) for name, fields in MODEL_FIELDS.items()}
    return blocks


def render(text: str) -> str:
    """`text` with every generated block replaced by its current table."""
    generated = tables()
    missing = set(generated) - {m.group("name") for m in _BLOCK.finditer(text)}
    if missing:
        raise ValueError(f"{DOC} lacks generated blocks for: {', '.join(sorted(missing))}")
    return _BLOCK.sub(lambda m: m.group(1) + generated[m.group("name")] + m.group(3), text)


def main(argv: list[str]) -> int:
    current = DOC.read_text()
    wanted = render(current)
    if "--write" in argv:
        DOC.write_text(wanted)
        return 0
    if wanted != current:
        print(f"{DOC} is stale: run python -m mad_core.spec_docs --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
