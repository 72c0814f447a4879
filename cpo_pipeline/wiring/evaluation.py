"""What the two evaluation assets share on the Dagster side: their scoring config, the test
split as a step failure when it is missing, and the blocking check that no test study was
trained on."""

from dataclasses import fields
from pathlib import Path

import dagster as dg
from pydantic import Field
from pydantic.fields import FieldInfo

from cpo_pipeline.evaluation.runner import (
    EvaluationInputError,
    ScoringOptions,
    leakage,
    test_rows,
)
from cpo_pipeline.wiring.launchpad import Offered, launchpad_config, offered_by


class _Scoring(dg.Config):
    def options(self) -> ScoringOptions:
        """The scoring options this config sets; the others keep their defaults."""
        (scoring,) = offered_by(type(self))
        return scoring.build(self)


def scoring_config(name: str, offered: tuple[str, ...], defaults: dict | None = None,
                   **extra: tuple[object, FieldInfo]) -> type[dg.Config]:
    """An evaluation's launchpad config: the `offered` ScoringOptions fields with their help
    (and `defaults` where this evaluation's differ), `force`, and the asset's own `extra`
    fields ((type, Field) pairs)."""
    left_out = frozenset(f.name for f in fields(ScoringOptions)) - set(offered)
    return launchpad_config(
        name, Offered(ScoringOptions, leave_out=left_out, defaults=defaults or {}),
        base=_Scoring, extra={
            "force": (bool, Field(default=False,
                                  description="Evaluate again though nothing changed.")),
            **extra})


def test_studies(data_root: Path, split: str = "test") -> list[dict]:
    """The `split` (test, or validate) of sft_dataset, or a step failure saying what to
    materialize or which splits there are."""
    try:
        return test_rows(data_root, split)
    except EvaluationInputError as error:
        raise dg.Failure(description=str(error)) from None


def leakage_check(data_root: Path, test: list[dict], name: str) -> dg.AssetCheckResult:
    """The blocking check that no test study, nor a patient of one, is in a training split;
    raises (with the figure, the bound and why no option relaxes it) when one is."""
    found = leakage(data_root, test)
    check = dg.AssetCheckResult(
        check_name=name, passed=found.clean, description=found.describe(),
        metadata={"leaked_studies": len(found.studies), "leaked_patients": len(found.patients),
                  "bound": 0})
    if not check.passed:
        raise dg.Failure(description=check.description, metadata=check.metadata)
    return check
