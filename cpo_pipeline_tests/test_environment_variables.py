"""`settings.PIPELINE_ENVIRONMENT` names every variable the package reads, and only those: the
clean environment of every test and benchmark is built from it, so a variable it lacks would
leak a developer's setting into them."""

import ast
import re
from pathlib import Path

import cpo_pipeline
from cpo_pipeline import settings

PACKAGE = Path(cpo_pipeline.__file__).parent
# The pipeline's own prefixes.
OWN_NAME = re.compile(r"(?:CPO|MIMIC)_[A-Z0-9_]+")


def _environ(node: ast.AST) -> bool:
    return ast.unparse(node).split(".")[-1] in {"environ", "env", "environment"}


def _read_name(node: ast.AST) -> str | None:
    """The variable a node reads or names: `X_ENV = "NAME"` (how the package names the
    variables it reads), `environ["NAME"]`, `environ.get("NAME")`, `os.getenv("NAME")`."""
    value = None
    if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id.endswith("_ENV") for t in node.targets):
        value = node.value
    elif isinstance(node, ast.Subscript) and _environ(node.value):
        value = node.slice
    elif isinstance(node, ast.Call) and node.args and (
            (isinstance(node.func, ast.Attribute) and node.func.attr in {"get", "pop"}
             and _environ(node.func.value))
            or ast.unparse(node.func).endswith("getenv")):
        value = node.args[0]
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value
    return None


def _read_names() -> dict[str, set[str]]:
    """Each variable name the package reads or names for reading → the modules (relative
    paths) that do."""
    read: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            name = _read_name(node)
            if name is not None:
                read.setdefault(name, set()).add(str(path.relative_to(PACKAGE)))
    return read


def test_every_cpo_and_mimic_variable_the_package_reads_is_in_the_tuple():
    missing = {name: sorted(modules) for name, modules in _read_names().items()
               if OWN_NAME.fullmatch(name) and name not in settings.PIPELINE_ENVIRONMENT}

    assert not missing, f"add these to settings.PIPELINE_ENVIRONMENT: {missing}"


def test_every_variable_in_the_tuple_is_read_somewhere():
    read = _read_names()

    assert [name for name in settings.PIPELINE_ENVIRONMENT if name not in read] == []


def test_the_tuple_names_each_variable_once():
    assert len(set(settings.PIPELINE_ENVIRONMENT)) == len(settings.PIPELINE_ENVIRONMENT)
