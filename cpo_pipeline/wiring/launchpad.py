"""Launchpad configs generated from the domain dataclasses, so that a field, its default and its
help text are written once, in the dataclass (`metadata={"help": ...}`); the asset module adds
only what the asset alone decides.

Dagster's config has lists, not tuples: a tuple-typed field is offered as a list and turned
back into a tuple by `Offered.build`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg
from pydantic import Field, create_model
from pydantic.fields import FieldInfo

_SOURCES = "__launchpad_sources__"


@dataclass(frozen=True)
class Offered:
    """The fields of one domain dataclass that a launchpad config offers: all but `leave_out`,
    each under its own name, `prefix` + its name, or the name `rename` gives it, with the
    dataclass's default unless `defaults` gives this config's own."""

    source: type
    leave_out: frozenset[str] = frozenset()
    rename: Mapping[str, str] = field(default_factory=dict)
    prefix: str = ""
    defaults: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {f.name for f in dataclasses.fields(self.source)}
        unknown = (set(self.leave_out) | set(self.rename) | set(self.defaults)) - names
        if unknown:
            raise ValueError(f"{self.source.__name__} has no field {sorted(unknown)}")
        fixed = set(self.leave_out) & set(self.defaults)
        if fixed:
            raise ValueError(f"{sorted(fixed)} of {self.source.__name__} are left out: a default "
                             "for them would never be offered")

    def names(self) -> dict[str, str]:
        """Each offered field's name in the dataclass → its name in the config."""
        return {f.name: self.rename.get(f.name, self.prefix + f.name)
                for f in dataclasses.fields(self.source) if f.name not in self.leave_out}

    def build(self, config: dg.Config, **given: object) -> typing.Any:
        """The dataclass instance a config's values make: the offered fields from `config`
        (lists back to tuples), `given` for those left out; the rest keep their defaults."""
        clash = set(given) & set(self.names())
        if clash:
            raise TypeError(f"{sorted(clash)} of {self.source.__name__} come from the config; "
                            "`given` is for the fields left out")
        hints = typing.get_type_hints(self.source)
        values = {name: _to_domain(hints[name], getattr(config, key))
                  for name, key in self.names().items()}
        return self.source(**values, **given)


def launchpad_config(
    name: str, *offered: Offered | type, extra: Mapping[str, tuple[object, FieldInfo]] = {},
    base: type[dg.Config] = dg.Config,
) -> type[dg.Config]:
    """A `dg.Config` subclass named `name`: `base`'s fields, then every field `offered` (a
    dataclass alone offers all its fields) with its type, default and help as the launchpad
    shows them, then the asset's own `extra` fields ((type, pydantic Field) pairs).

    Raises when two fields get one name (rename or leave one out), when an offered field has
    no help, or when its type cannot be a launchpad field (a nested dataclass: leave it out and
    pass it to `build`)."""
    sources = tuple(o if isinstance(o, Offered) else Offered(o) for o in offered)
    taken = {key: f"{base.__name__}.{key}" for key in base.model_fields}
    launchpad: dict[str, tuple[object, FieldInfo]] = {}
    for source in sources:
        hints = typing.get_type_hints(source.source)
        names = source.names()
        for f in dataclasses.fields(source.source):
            if f.name not in names:
                continue
            key = names[f.name]
            _claim(taken, key, f"{source.source.__name__}.{f.name}")
            launchpad[key] = _launchpad_field(source, f, hints[f.name])
    for key in extra:
        _claim(taken, key, f"the extra field {key}")
    generated = create_model(name, __base__=base, **launchpad, **extra)
    setattr(generated, _SOURCES, sources)
    return generated


def offered_by(config_class: type[dg.Config]) -> tuple[Offered, ...]:
    """What `launchpad_config` generated `config_class` from (nothing for a hand-written one)."""
    return config_class.__dict__.get(_SOURCES, ())


def _claim(taken: dict[str, str], key: str, owner: str) -> None:
    if key in taken:
        raise ValueError(f"launchpad field {key!r} would come from both {taken[key]} and "
                         f"{owner}: rename, prefix or leave one out")
    taken[key] = owner


def _launchpad_field(offered: Offered, f: dataclasses.Field, hint: object
                     ) -> tuple[object, FieldInfo]:
    source = offered.source.__name__
    if "help" not in f.metadata:
        raise ValueError(f"{source}.{f.name} has no metadata['help'] for the launchpad")
    if dataclasses.is_dataclass(hint):
        raise TypeError(f"{source}.{f.name} is a nested dataclass: leave it out and pass it "
                        "to Offered.build")
    launchpad_type = _as_list(hint)
    as_list = launchpad_type is not hint
    description = f.metadata["help"]
    own = offered.defaults.get(f.name, f.default)
    if own is not dataclasses.MISSING:
        # A default (not a factory) even for a list, so that the launchpad shows it.
        default = list(own) if as_list else own
        return launchpad_type, Field(default=default, description=description)
    if f.default_factory is not dataclasses.MISSING:
        factory = f.default_factory
        return launchpad_type, Field(
            default_factory=(lambda: list(factory())) if as_list else factory,
            description=description)
    return launchpad_type, Field(description=description)


def _as_list(hint: object) -> object:
    """`tuple[X, ...]` or `tuple[X, X]` as `list[X]`; any other type as it is."""
    if typing.get_origin(hint) is not tuple:
        return hint
    items = {arg for arg in typing.get_args(hint) if arg is not Ellipsis}
    if len(items) != 1:
        raise TypeError(f"{hint} mixes item types: a launchpad list has one")
    return list[items.pop()]


def _to_domain(hint: object, value: object) -> object:
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value

