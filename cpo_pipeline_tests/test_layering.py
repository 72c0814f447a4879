"""The package's layering: which modules may import which. Imports are read from the source
(every import statement, function-level ones included), so a lazy import breaks a rule too."""

import ast
import subprocess
import sys
from pathlib import Path

import cpo_pipeline

PACKAGE = Path(cpo_pipeline.__file__).parent
# The Dagster layer; everything else is plain Python that tests and scripts use without Dagster.
# training/pipes.py is the training process's side of Pipes: dagster-pipes only, no Dagster.
DAGSTER_LAYER = ("assets/", "resources/", "wiring/", "definitions.py", "sensors.py",
                 "training/pipes.py")
# What the code server must not load: the training frameworks (seconds and gigabytes) and the
# quality figures' sklearn and scipy (seconds on every code-server start).
HEAVY_PACKAGES = ("torch", "transformers", "trl", "sklearn", "scipy")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_entry_point(path: Path) -> bool:
    """A script run as `python -m ...`: it guards its `main()` with `__name__ == "__main__"`."""
    return any(isinstance(node, ast.Compare) and isinstance(node.left, ast.Name)
               and node.left.id == "__name__"
               for node in ast.walk(ast.parse(path.read_text())))


def _importers(target: str) -> list[str]:
    return sorted(name for name, path in _modules().items()
                  if any(i == target or i.startswith(target + ".") for i in _imports(path)))


def test_resources_never_import_the_asset_modules():
    offenders = sorted(f"{name} imports {imported}" for name, path in _modules().items()
                       if name.startswith("cpo_pipeline.resources")
                       for imported in _imports(path)
                       if imported.startswith("cpo_pipeline.assets"))

    assert offenders == []


def test_no_asset_module_imports_another_asset_module():
    assets = {name for name in _modules() if name.startswith("cpo_pipeline.assets.")}
    offenders = sorted(f"{name} imports {imported}" for name in assets
                       for imported in _imports(_modules()[name])
                       if any(imported == other or imported.startswith(other + ".")
                              for other in assets - {name}))

    assert offenders == []


def test_no_module_imports_an_entry_point_script():
    entry_points = [name for name, path in _modules().items() if _is_entry_point(path)]
    offenders = {entry: importers for entry in entry_points
                 if (importers := [m for m in _importers(entry) if m != entry])}

    assert "cpo_pipeline.training.train" in entry_points and "cpo_pipeline.cli" in entry_points
    assert offenders == {}


def test_only_the_dagster_layer_imports_dagster():
    offenders = sorted(
        str(path.relative_to(PACKAGE)) for path in _modules().values()
        if not str(path.relative_to(PACKAGE)).startswith(DAGSTER_LAYER)
        and any(name.split(".")[0].startswith("dagster") for name in _imports(path)))

    assert offenders == []


def test_loading_the_code_location_imports_no_training_framework_nor_sklearn_or_scipy():
    loaded = subprocess.run(
        [sys.executable, "-c", ("import sys, cpo_pipeline.definitions; "
                                f"print(sorted({{m.split('.')[0] for m in sys.modules}} "
                                f"& {set(HEAVY_PACKAGES)!r}))")],
        capture_output=True, text=True, check=True,
    )

    assert loaded.stdout.strip() == "[]"
