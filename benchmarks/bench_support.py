"""What more than one benchmark needs: an environment no developer setting reaches, quiet Dagster
runs of the real assets, and the synthetic cohort the CPO experiments train on.

The benchmarks run as scripts, whose folder Python puts first on `sys.path`, so they import this
module by its bare name; it is not part of the package, and imports nothing heavy at the top
(`clean_environment` must run before the Hugging Face libraries are imported).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cpo_pipeline.settings import HUGGING_FACE_OFFLINE, PIPELINE_ENVIRONMENT

if TYPE_CHECKING:
    import dagster as dg
    import pandas as pd

# The data chain from the raw tree to the four training sets.
DATA_ASSETS = ("cxr_studies", "concept_graph", "counterfactual_trajectories", "sft_dataset",
               "preference_pairs", "random_negative_pairs", "diagnosis_only_pairs")
# The experiments' phantoms, twice the side the tiny model sees them at (64x64): shrunk by the
# image processor's filter rather than rendered at 64 px, fine findings keep their contrast.
IMAGE_SIZE = (128, 128)


def clean_environment() -> None:
    """Unset every variable the pipeline reads and keep the Hugging Face libraries offline, for
    this process and every process it starts.

    Left set, a developer's own settings would point a benchmark at their data, their LLM
    endpoint (with its API key and allowed hosts) or their MLflow server, and the figures would
    measure those instead of the embedded defaults."""
    for name in PIPELINE_ENVIRONMENT:
        os.environ.pop(name, None)
    os.environ.update(HUGGING_FACE_OFFLINE)


def asset_definitions(names: Sequence[str]) -> list[dg.AssetsDefinition]:
    """The named assets of the code location. The first call imports every asset module, which
    takes seconds: make it before a timed run."""
    from cpo_pipeline.definitions import defs

    return [defs.get_assets_def(name) for name in names]


def materialize(assets: Sequence[dg.AssetsDefinition], resources: dict, selection: Sequence[str],
                run_config: Mapping | None = None, log_level: str = "WARNING",
                raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """`selection` of `assets` (which must hold every asset upstream of it) on an ephemeral
    instance, the console logger at `log_level`: every step's INFO lines would bury the
    figures."""
    import dagster as dg

    config = {"loggers": {"console": {"config": {"log_level": log_level}}}, **(run_config or {})}
    return dg.materialize(assets, resources=resources, selection=list(selection),
                          run_config=config, instance=dg.DagsterInstance.ephemeral(),
                          raise_on_error=raise_on_error)


def _data_outputs() -> list[str]:
    """Every output of each data asset (ingestion is one multi-asset of five tables)."""
    from cpo_pipeline.definitions import defs

    return sorted({key.to_user_string() for name in DATA_ASSETS
                   for key in defs.get_assets_def(name).keys})


def materialize_under(data_root: Path, selection: Sequence[str],
                      run_config: Mapping | None = None) -> dg.ExecuteInProcessResult:
    """`materialize` of `selection` with every resource rooted at `data_root` and training runs
    launched as local subprocesses (the code location's choice without Kubernetes); exits when
    the run fails. `selection`: outputs of the data chain, or assets that read them (models,
    evaluations), whose definitions are loaded beside the data chain's."""
    import dagster as dg

    from cpo_pipeline.resources.rooted import rooted_resources

    data = _data_outputs()
    assets = asset_definitions([*DATA_ASSETS, *(name for name in selection if name not in data)])
    resources = {**rooted_resources(data_root),
                 "pipes_subprocess_client": dg.PipesSubprocessClient()}
    result = materialize(assets, resources, selection, run_config)
    if not result.success:
        raise SystemExit(f"materializing {list(selection)} failed")
    return result


def read_studies(data_root: Path) -> pd.DataFrame:
    """The cohort's `cxr_studies` table, as `build_cohort` wrote it."""
    import pandas as pd

    from cpo_pipeline.storage import table_path

    return pd.read_parquet(table_path(data_root, ["cxr_studies"]))


def build_cohort(data_root: Path, patients: int, cohort_seed: int, drift: float = 0.0,
                 run_config: Mapping | None = None) -> dict:
    """The raw tree (`drift`: how far the label mix moves along each patient's course,
    `DemoConfig.drift`) and every dataset asset from it (`run_config`: theirs); returns the
    cohort's sizes."""
    from cpo_pipeline import data_layout
    from cpo_pipeline.demo.generator import DemoConfig
    from cpo_pipeline.demo.tree import ensure_demo_tree

    ensure_demo_tree(data_layout.demo_tree(data_root),
                     DemoConfig(patients=patients, seed=cohort_seed, image_size=IMAGE_SIZE,
                                drift=drift))
    materialize_under(data_root, _data_outputs(), run_config)
    studies = read_studies(data_root)
    return {"patients": patients, "studies": len(studies),
            "split": studies["split"].value_counts().to_dict()}


def add_cohort_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every CPO experiment takes: which cohort, how many bootstrap resamples,
    where its data lives and where its results go."""
    parser.add_argument("--cohort-seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--data-root", type=Path, help="keep everything here (default: a "
                        "temporary folder)")
    parser.add_argument("--json", type=Path, help="write the results here")


@contextmanager
def experiment_root(kept: Path | None) -> Iterator[Path]:
    """`kept` (`--data-root`, to reuse or inspect the runs), else a folder removed at the end."""
    if kept is not None:
        yield kept
        return
    with tempfile.TemporaryDirectory() as scratch:
        yield Path(scratch)
