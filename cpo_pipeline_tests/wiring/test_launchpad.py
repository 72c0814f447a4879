from dataclasses import dataclass, field

import dagster as dg
import pytest
from pydantic import Field

from cpo_pipeline.wiring.launchpad import Offered, launchpad_config, offered_by


@dataclass(frozen=True)
class Gate:
    threshold: float = field(default=0.6, metadata={"help": "At most this often."})
    ratio: tuple[float, float] = field(default=(0.9, 1.1), metadata={"help": "Within these."})
    seed: int = field(default=0, metadata={"help": "Seed of the sample."})


@dataclass(frozen=True)
class Sample:
    seed: int = field(default=7, metadata={"help": "Seed of the draw."})
    names: list[str] = field(default_factory=lambda: ["train"], metadata={"help": "Splits."})


@dataclass(frozen=True)
class Undescribed:
    size: int = 3


def _launchpad_fields(config_class: type[dg.Config]) -> dict[str, tuple[str, object, str]]:
    """What Dagster's launchpad shows of a config class: type, default (None: no default shown),
    description, as an asset's op sees them."""

    @dg.asset(name="probe")
    def probe(config: config_class):  # type: ignore[valid-type]
        return None

    shown = probe.op.config_schema.config_type.fields
    return {name: (f.config_type.key, f.default_value if f.default_provided else None,
                   f.description) for name, f in shown.items()}


def test_every_dataclass_field_is_offered_with_its_type_default_and_help():
    config = launchpad_config("GateConfig", Gate)

    assert _launchpad_fields(config) == {
        "threshold": ("Noneable.Float", 0.6, "At most this often."),
        "ratio": ("Noneable.Array.Float", [0.9, 1.1], "Within these."),
        "seed": ("Noneable.IntSourceType", 0, "Seed of the sample."),
    }
    assert list(config.model_fields) == ["threshold", "ratio", "seed"]


def test_a_default_factory_stays_a_factory():
    config = launchpad_config("SampleConfig", Sample)

    assert config().names == ["train"]
    assert config().names is not config().names
    assert _launchpad_fields(config)["names"] == ("Noneable.Array.StringSourceType", None,
                                                  "Splits.")


def test_build_turns_the_config_back_into_the_dataclass_with_tuples():
    gate = Offered(Gate)
    config = launchpad_config("GateConfig", gate)

    built = gate.build(config(threshold=0.7, ratio=[0.8, 1.2]))

    assert built == Gate(threshold=0.7, ratio=(0.8, 1.2), seed=0)
    assert isinstance(built.ratio, tuple)


def test_left_out_fields_are_not_offered_and_take_given_values_or_defaults():
    gate = Offered(Gate, leave_out=frozenset({"ratio", "seed"}))
    config = launchpad_config("GateConfig", gate)

    assert list(config.model_fields) == ["threshold"]
    assert gate.build(config(threshold=0.5)) == Gate(threshold=0.5)
    assert gate.build(config(), seed=3) == Gate(seed=3)


def test_given_values_may_not_shadow_offered_fields():
    gate = Offered(Gate)
    config = launchpad_config("GateConfig", gate)

    with pytest.raises(TypeError, match=r"\['seed'\] of Gate come from the config"):
        gate.build(config(), seed=3)


def test_renamed_and_prefixed_fields_keep_their_defaults_and_map_back():
    gate = Offered(Gate, rename={"threshold": "max_share"}, prefix="gate_")
    sample = Offered(Sample, prefix="sample_")
    config = launchpad_config("BothConfig", gate, sample)
    values = config(max_share=0.4, gate_seed=1, sample_seed=2)

    assert list(config.model_fields) == ["max_share", "gate_ratio", "gate_seed", "sample_seed",
                                         "sample_names"]
    assert config().sample_seed == 7
    assert gate.build(values) == Gate(threshold=0.4, seed=1)
    assert sample.build(values) == Sample(seed=2)


def test_two_fields_of_one_name_are_refused():
    with pytest.raises(ValueError, match="'seed' would come from both Gate.seed and Sample.seed"):
        launchpad_config("Clash", Gate, Sample)


def test_extra_fields_follow_the_dataclass_fields_and_may_not_clash():
    config = launchpad_config(
        "GateConfig", Offered(Gate, leave_out=frozenset({"ratio"})),
        extra={"force": (bool, Field(default=False, description="Run again."))})

    assert _launchpad_fields(config)["force"] == ("Noneable.BoolSourceType", False, "Run again.")
    assert list(config.model_fields) == ["threshold", "seed", "force"]
    with pytest.raises(ValueError, match="'seed' would come from both Gate.seed and the extra"):
        launchpad_config("Clash", Gate,
                         extra={"seed": (int, Field(default=1, description="Another seed."))})


def test_a_base_class_fields_come_first_and_may_not_clash():
    class Base(dg.Config):
        request: str = Field(default="why?", description="The request.")
        seed: int = Field(default=5, description="The set's seed.")

    config = launchpad_config("GateConfig", Offered(Gate, leave_out=frozenset({"seed"})),
                              base=Base)

    assert list(config.model_fields) == ["request", "seed", "threshold", "ratio"]
    assert issubclass(config, Base)
    with pytest.raises(ValueError, match="'seed' would come from both Base.seed and Gate.seed"):
        launchpad_config("Clash", Gate, base=Base)


def test_a_field_without_help_or_a_misnamed_option_is_refused():
    with pytest.raises(ValueError, match=r"Undescribed.size has no metadata\['help'\]"):
        launchpad_config("Bare", Undescribed)
    with pytest.raises(ValueError, match=r"Gate has no field \['treshold'\]"):
        Offered(Gate, leave_out=frozenset({"treshold"}))


def test_a_nested_dataclass_must_be_left_out():
    @dataclass(frozen=True)
    class Outer:
        gate: Gate = field(default_factory=Gate, metadata={"help": "The gate."})

    with pytest.raises(TypeError, match="Outer.gate is a nested dataclass"):
        launchpad_config("Nested", Outer)


def test_the_generated_class_remembers_what_it_offers():
    gate = Offered(Gate, leave_out=frozenset({"seed"}))

    assert offered_by(launchpad_config("GateConfig", gate)) == (gate,)
    assert offered_by(dg.Config) == ()


def test_run_config_from_the_launchpad_reaches_the_asset_as_the_dataclass():
    gate = Offered(Gate, leave_out=frozenset({"seed"}))
    config_class = launchpad_config("GateConfig", gate)
    seen = []

    @dg.asset
    def gated(config: config_class):  # type: ignore[valid-type]
        seen.append(gate.build(config, seed=9))

    result = dg.materialize([gated], run_config={"ops": {"gated": {"config": {
        "threshold": 0.25, "ratio": [0.5, 2.0]}}}})

    assert result.success
    assert seen == [Gate(threshold=0.25, ratio=(0.5, 2.0), seed=9)]


def test_a_config_may_offer_its_own_default_and_build_reads_it():
    gate = Offered(Gate, defaults={"threshold": 0.4, "ratio": (0.5, 2.0)})
    config = launchpad_config("LooserGate", gate)

    assert _launchpad_fields(config)["threshold"] == ("Noneable.Float", 0.4, "At most this often.")
    assert _launchpad_fields(config)["ratio"][1] == [0.5, 2.0]
    assert gate.build(config()) == Gate(threshold=0.4, ratio=(0.5, 2.0))
    with pytest.raises(ValueError, match=r"\['seed'\] of Gate are left out"):
        Offered(Gate, leave_out=frozenset({"seed"}), defaults={"seed": 1})
    with pytest.raises(ValueError, match=r"Gate has no field \['thresold'\]"):
        Offered(Gate, defaults={"thresold": 1})
