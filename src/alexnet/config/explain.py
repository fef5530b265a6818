"""``alexnet config --explain``: every key with its default, its meaning and, for the preset values,
each preset's value and its source (:mod:`alexnet.config.presets`)."""

from __future__ import annotations

import dataclasses

from alexnet.config.loader import toml_value
from alexnet.config.presets import DEVIATIONS, provenance_lines
from alexnet.config.schema import SECTIONS


def explain() -> str:
    """Every key of every section: default and documentation, then each preset's value and source."""
    out = []
    for section, cls in SECTIONS.items():
        out.append(f"[{section}]  {cls.__doc__.splitlines()[0]}")
        for f in dataclasses.fields(cls):
            out.append(f"  {f.name} = {toml_value(f.default)}\n      {f.metadata.get('doc', '')}")
            out += [f"      preset {line}" for line in provenance_lines(f"{section}.{f.name}")]
        out.append("")
    for name, notes in DEVIATIONS.items():
        out.append(f"Remaining differences of preset {name!r} from its source (no key changes them):")
        out += [f"  - {n}" for n in notes]
    return "\n".join(out)
