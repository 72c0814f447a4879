"""A default a description quotes is the field's default: the asset's, its checks' and its
launchpad fields' descriptions, for every asset of the code location.

A description quotes a default beside the field's name, "`name` (default 0.60)" or, for a
field the launchpad leaves fixed, "`name` (0.9-1.1)", and formats it from the dataclass. Three
rules hold it to that: a value quoted beside a name equals that field's default; an asset's or a
check's description never quotes a bare number (but a digit: "Stage 1") equal to one of the
asset's defaults (a copy typed by hand, which goes stale when the default moves); and a field's help that says "default
is N" says its own default.
"""

import inspect
import re

import dagster as dg
import pytest

from cpo_pipeline.definitions import defs
from cpo_pipeline.wiring.launchpad import offered_by

# The data half (ingestion to the training sets); the rest, training and evaluation, is run by
# `test_the_training_half_...` (`-k data_half` runs this half alone).
DATA_HALF = ("mimic_cxr_source", "cxr_images", "cxr_reports", "cxr_labels", "cxr_studies",
             "ingest_rejects", "concept_graph", "counterfactual_trajectories", "sft_dataset",
             "preference_pairs", "random_negative_pairs", "diagnosis_only_pairs")

_NUMBER = r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:e-?\d+)?%?"
_NAMED = re.compile(
    rf"`(?P<name>\w+)` \((?:default )?(?P<low>{_NUMBER})(?:-(?P<high>{_NUMBER}))?\)")
_BARE = re.compile(rf"(?<![\w.`-]){_NUMBER}(?![\w`])")
_CLAIMED = re.compile(rf"\bdefault(?:s to| is|:)? (?P<value>{_NUMBER})")


def _number(text: str) -> float:
    value = float(text.rstrip("%").replace(",", ""))
    return value / 100 if text.endswith("%") else value


def _numeric(default: object) -> bool:
    if isinstance(default, list | tuple):
        return bool(default) and all(_numeric(item) for item in default)
    return isinstance(default, int | float) and not isinstance(default, bool)


def _same(quoted: float | tuple[float, ...], default: object) -> bool:
    if isinstance(default, list | tuple):
        return isinstance(quoted, tuple) and len(quoted) == len(default) and all(
            round(q, 12) == round(float(d), 12) for q, d in zip(quoted, default, strict=True))
    return not isinstance(quoted, tuple) and round(quoted, 12) == round(float(default), 12)


def _assets() -> dict[str, dg.AssetsDefinition]:
    graph = defs.get_repository_def().asset_graph
    return {key.to_user_string(): graph.get(key).assets_def for key in graph.get_all_asset_keys()}


def _config(assets_def: dg.AssetsDefinition) -> tuple[dict[str, object], dict[str, str]]:
    """The asset's numeric defaults by field name (the launchpad's, and those of the dataclass
    fields its config leaves out) and each launchpad field's description."""
    if not assets_def.is_executable or assets_def.op.config_schema is None:
        return {}, {}
    shown = getattr(assets_def.op.config_schema.config_type, "fields", {})
    defaults = {name: f.default_value for name, f in shown.items() if f.default_provided}
    described = {name: f.description or "" for name, f in shown.items()}
    parameters = inspect.signature(assets_def.op.compute_fn.decorated_fn, eval_str=True).parameters
    if "config" in parameters:
        for offered in offered_by(parameters["config"].annotation):
            defaults |= {f.name: f.default for f in offered.source.__dataclass_fields__.values()
                         if f.name in offered.leave_out}
    return {name: d for name, d in defaults.items() if _numeric(d)}, described


def _descriptions(key: str, assets_def: dg.AssetsDefinition) -> dict[str, str]:
    texts = {"the asset": assets_def.descriptions_by_key.get(dg.AssetKey.from_user_string(key))}
    texts |= {f"check {spec.name}": spec.description for spec in assets_def.check_specs
              if spec.asset_key.to_user_string() == key}
    return {where: text for where, text in texts.items() if text}


def stale_quotes(key: str) -> list[str]:
    """What the descriptions of asset `key` quote that is not the default it stands beside."""
    assets_def = _assets()[key]
    defaults, described = _config(assets_def)
    found = []

    def named_quotes(where: str, text: str) -> str:
        for match in _NAMED.finditer(text):
            name, quoted = match["name"], _number(match["low"])
            if match["high"] is not None:
                quoted = (quoted, _number(match["high"]))
            if name not in defaults:
                found.append(f"{where} quotes {match[0]!r}: `{name}` has no numeric default "
                             f"in {key}'s config")
            elif not _same(quoted, defaults[name]):
                found.append(f"{where} quotes {match[0]!r}; the default is {defaults[name]!r}")
        return _NAMED.sub("", text)

    for where, text in _descriptions(key, assets_def).items():
        rest = named_quotes(where, text)
        for bare in _BARE.finditer(rest):
            if re.fullmatch(r"-?\d", bare[0]):
                continue  # a digit is prose ("Stage 1"), too common to read as a quote
            owners = [name for name, default in defaults.items()
                      if any(_same(_number(bare[0]), d)
                             for d in (default if isinstance(default, list | tuple) else [default]))]
            if owners:
                found.append(f"{where} quotes {bare[0]!r}, the default of {owners}, without "
                             "naming it (write `name` (default N), formatted from the default)")
    for name, text in described.items():
        named_quotes(f"field {name}'s help", text)
        for claim in _CLAIMED.finditer(text):
            if name in defaults and not _same(_number(claim["value"]), defaults[name]):
                found.append(f"field {name}'s help says {claim[0]!r}; the default is "
                             f"{defaults[name]!r}")
    return found


@pytest.mark.parametrize("key", DATA_HALF)
def test_the_data_half_descriptions_quote_each_default_as_it_is(key):
    assert stale_quotes(key) == []


@pytest.mark.parametrize("key", sorted(set(_assets()) - set(DATA_HALF)))
def test_the_training_half_descriptions_quote_each_default_as_it_is(key):
    assert stale_quotes(key) == []


def test_every_asset_is_in_one_half():
    assert set(DATA_HALF) <= set(_assets())
