"""Study configurations from TOML: frozen section dataclasses overridden table by table."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path

from mis._validation import plain
from mis.exceptions import MisValueError

__all__ = ["load_toml", "override_sections", "sections_dict"]


def override_sections(base, d, sections: dict[str, type]):
    """``base`` (a frozen dataclass of section dataclasses) with the keys of the tables of
    ``d`` replaced; an unknown section or key raises ``ValueError`` naming it."""
    if not isinstance(d, Mapping):
        raise MisValueError(f"a configuration must be a table of sections; got {d!r}")
    unknown = sorted(set(d) - set(sections))
    if unknown:
        raise MisValueError(
            f"unknown configuration section {unknown[0]!r}; valid sections: {list(sections)}"
        )
    parts = {}
    for section, klass in sections.items():
        current = getattr(base, section)
        values = d.get(section, {})
        if not isinstance(values, Mapping):
            raise MisValueError(f"{section} must be a table ([{section}]); got {values!r}")
        values = _apply_aliases(values, section, getattr(klass, "ALIASES", {}))
        fields = {f.name for f in dataclasses.fields(klass)}
        bad = sorted(set(values) - fields)
        if bad:
            raise MisValueError(
                f"unknown configuration key '{section}.{bad[0]}'; valid keys of "
                f"[{section}]: {sorted(fields)}"
            )
        parts[section] = dataclasses.replace(current, **values) if values else current
    return type(base)(**parts)


def _apply_aliases(values: Mapping, section: str, aliases: Mapping[str, str]) -> Mapping:
    """Former key names (a section's ``ALIASES``: old → new) read as the new ones."""
    if not any(k in values for k in aliases):
        return values
    out = dict(values)
    for old, new in aliases.items():
        if old in out:
            if new in out:
                raise MisValueError(
                    f"give {section}.{new} or its former name {section}.{old}, not both"
                )
            out[new] = out.pop(old)
    return out


def sections_dict(config, sections) -> dict:
    """A configuration of section dataclasses as a plain (JSON / TOML-compatible) nested dict."""
    return {s: plain(dataclasses.asdict(getattr(config, s))) for s in sections}


def load_toml(path) -> dict:
    """The tables of a TOML file; a missing or invalid file raises ``ValueError``."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise MisValueError(f"config file not found: {p}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MisValueError(f"config file {p} is not valid TOML: {exc}") from None
    except OSError as exc:  # a directory, no permission, ...
        raise MisValueError(f"config file {p} cannot be read: {exc.strerror or exc}") from None
