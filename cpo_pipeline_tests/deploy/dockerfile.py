"""A small reader of the project's Dockerfiles: instructions with their arguments, build args,
and the pip installs of a build with the default args (no Docker engine runs here)."""

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
DOCKER = REPOSITORY / "docker"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(path: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments left out."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    parsed = []
    for text in logical:
        keyword, _, arguments = text.strip().partition(" ")
        parsed.append(Instruction(keyword.upper(), arguments.strip()))
    return parsed


def build_args(path: Path) -> dict[str, str]:
    """Each `ARG NAME=default` (an `ARG NAME` without default is '')."""
    args = {}
    for instruction in instructions(path):
        if instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            args[name] = default
    return args


def expand(text: str, args: dict[str, str]) -> str:
    """`${NAME}`, `$NAME` and `${NAME:+word}` as a build with these args expands them."""
    text = re.sub(r"\$\{(\w+):\+([^}]*)\}", lambda m: m[2] if args.get(m[1]) else "", text)
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def run_commands(path: Path) -> list[list[str]]:
    """Every shell command of the RUN instructions (split at `&&`), as words, args expanded."""
    commands = []
    args = build_args(path)
    for instruction in instructions(path):
        if instruction.keyword == "RUN":
            for command in expand(instruction.arguments, args).split("&&"):
                commands.append(shlex.split(command))
    return commands


def pip_installs(path: Path) -> list[list[str]]:
    """The requirements each `pip install` of the build names (options left out)."""
    installs = []
    for words in run_commands(path):
        if words[:2] == ["pip", "install"]:
            requirements, skip = [], False
            for word in words[2:]:
                if skip:
                    skip = False
                elif word in ("--index-url", "-r", "--extra-index-url"):
                    skip = True
                elif not word.startswith("-"):
                    requirements.append(word)
            installs.append(requirements)
    return installs


def copied_sources(path: Path) -> list[str]:
    sources = []
    for instruction in instructions(path):
        if instruction.keyword == "COPY" and "--from" not in instruction.arguments:
            sources += instruction.arguments.split()[:-1]
    return sources


def extras_of(requirement: str) -> set[str]:
    """`.[train,k8s]` → {"train", "k8s"}."""
    match = re.fullmatch(r"[^\[]*\[([^\]]*)\]", requirement)
    return set(match[1].split(",")) if match else set()
