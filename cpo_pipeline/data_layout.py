"""The data root's layout: every directory the pipeline writes under it, named once.

```
<data_root>/
  tables/<asset>.parquet            one Parquet file per table asset (and per shard)
  images/                           preprocessed PNGs by content hash, decoded.parquet
  previews/                         pictures also shown in the UI
  concepts/                         the concept graph's files
  llm_cache/responses.sqlite        every LLM answer, by content
  datasets/<asset>/<split>/         each training set as a Hugging Face dataset, and its card
  staged_datasets/stage-<k>/<asset>/train/   the training sets cut by stage (staged tuning)
  models/<asset>/<run key>/         training runs (`training.run_dirs`: what a run holds)
  mlflow/                           the MLflow store, unless $MLFLOW_TRACKING_URI is set
  evaluation/<key>/                 model_evaluation's reports
  evaluation/staged/<key>/          staged_evaluation's reports
  demo/mimic-cxr/                   the embedded demo tree, when no MIMIC-CXR copy is set
```

What sits inside each directory is its owner's (the image store, the run directories, ...);
which directories exist and where is decided here only. Plain Python, no Dagster.
"""

from __future__ import annotations

from pathlib import Path

TABLES = "tables"
IMAGES = "images"
PREVIEWS = "previews"
CONCEPTS = "concepts"
LLM_CACHE = "llm_cache"
DATASETS = "datasets"
STAGED_DATASETS = "staged_datasets"
MODELS = "models"
MLFLOW = "mlflow"
EVALUATION = "evaluation"
STAGED_EVALUATION = "staged"
DEMO_TREE = Path("demo", "mimic-cxr")
# Where code before December 2026 wrote the staged sets: inside the training sets' namespace.
_OLD_STAGED_DATASETS = Path(DATASETS, "staged")


def tables(data_root: Path) -> Path:
    return Path(data_root, TABLES)


def images(data_root: Path) -> Path:
    return Path(data_root, IMAGES)


def previews(data_root: Path) -> Path:
    return Path(data_root, PREVIEWS)


def concepts(data_root: Path) -> Path:
    return Path(data_root, CONCEPTS)


def llm_cache(data_root: Path) -> Path:
    return Path(data_root, LLM_CACHE)


def dataset(data_root: Path, asset: str) -> Path:
    """A training set asset's folder: one Hugging Face dataset per split and its card."""
    return Path(data_root, DATASETS, asset)


def staged_datasets(data_root: Path) -> Path:
    return Path(data_root, STAGED_DATASETS)


def models(data_root: Path, asset: str) -> Path:
    """A model asset's training runs."""
    return Path(data_root, MODELS, asset)


def mlflow(data_root: Path) -> Path:
    return Path(data_root, MLFLOW)


def evaluation(data_root: Path, staged: bool = False) -> Path:
    folder = Path(data_root, EVALUATION)
    return folder / STAGED_EVALUATION if staged else folder


def demo_tree(data_root: Path) -> Path:
    return Path(data_root, DEMO_TREE)


def moved_staged_datasets(data_root: Path) -> str | None:
    """What to tell a user whose data root holds staged sets where older code wrote them
    (`datasets/staged/`); None when there are none."""
    old = Path(data_root, _OLD_STAGED_DATASETS)
    if not old.is_dir():
        return None
    return (f"the staged training sets moved from {old} to {staged_datasets(data_root)}: "
            f"re-materialize staged_training_sets (trained staged runs are reused, their data "
            f"being the same), then delete {old}")
