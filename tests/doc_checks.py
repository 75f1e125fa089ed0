"""Checks of documented commands that do not run them (tests/test_docs.py, ``check``).

``check_block`` checks every command of a block; ``check_inline`` an inline ``python ...``
command of the prose, which may hold placeholders (flag names are checked, not values).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.doc_blocks import COMMAND_WORDS, Block, commands, split_assignments

ROOT = Path(__file__).resolve().parent.parent


def _quiet_env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", DLRM_HUGE_PAGES="0")


@functools.cache
def help_of(argv: tuple[str, ...], cwd: str) -> tuple[int, str]:
    """Exit status and output of ``argv --help`` (run once per program)."""
    result = subprocess.run(
        [*argv, "--help"], cwd=cwd, env=_quiet_env(), capture_output=True, text=True, timeout=300
    )
    return result.returncode, result.stdout + result.stderr


def flag_names(words: list[str]) -> set[str]:
    """``--name`` of each flag word (``[--x``, ``--x=v`` and ``--x]`` included)."""
    names = set()
    for word in words:
        word = word.strip("[]")
        if word.startswith("--") and len(word) > 2:
            names.add(word.split("=", 1)[0])
    return names


def check_flags_in_help(argv: tuple[str, ...], args: list[str], where: str) -> list[str]:
    """The program answers --help, and names every flag ``args`` uses."""
    status, text = help_of(argv, str(ROOT))
    if status != 0:
        return [f"{where}: `{' '.join(argv)} --help` exits {status}:\n{text[-2000:]}"]
    known = set(re.findall(r"--[A-Za-z0-9][\w-]*", text))
    unknown = sorted(flag_names(args) - known)
    return [f"{where}: `{' '.join(argv)}` has no flag {', '.join(unknown)}"] if unknown else []


def dlrm_flags_problem(args: list[str], where: str, parse_values: bool) -> list[str]:
    """``dlrm_main.py`` flags: known names, and with ``parse_values`` a valid configuration."""
    from models import flags as dlrm_flags

    try:  # config_from_flags moves from models.config to models.flags
        from models.flags import config_from_flags
    except ImportError:
        from models.config import config_from_flags

    if not parse_values:
        names = flag_names(args) - {"--help", "--helpfull"}
        unknown = sorted(n for n in names if n[2:] not in dlrm_flags.FLAGS)
        return [f"{where}: dlrm_main.py has no flag {', '.join(unknown)}"] if unknown else []
    try:
        config_from_flags(dlrm_flags.parse(["dlrm_main.py", *args]))
    except Exception as error:  # absl's flag errors and ConfigError alike
        return [f"{where}: dlrm_main.py {' '.join(args)}: {type(error).__name__}: {error}"]
    return []


def module_path(module: str) -> Path | None:
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.exists():
            return candidate
    return None


def check_python(args: list[str], cwd: Path, where: str, parse_values: bool) -> list[str]:
    """``python -m MODULE ...``, ``python dlrm_main.py ...`` or ``python FILE.py ...``."""
    if args[:1] == ["-m"] and len(args) > 1:
        if module_path(args[1]) is None:
            return [f"{where}: no module {args[1]} in the repository"]
        program, rest = (sys.executable, "-m", args[1]), args[2:]
        if args[1] == "tools.bench" and rest and not rest[0].startswith("-"):
            program, rest = (*program, rest[0]), rest[1:]  # the benchmark's own --help
        return check_flags_in_help(program, rest, where)
    if not args or not args[0].endswith(".py"):
        return [f"{where}: cannot check `python {' '.join(args)}`"]
    path = (cwd / args[0]).resolve()
    if not path.is_file():
        return [f"{where}: {args[0]} does not exist (from {cwd.relative_to(ROOT)}/)"]
    if path.name == "dlrm_main.py":
        return dlrm_flags_problem(args[1:], where, parse_values)
    return check_flags_in_help((sys.executable, str(path)), args[1:], where)


def run_script_flags(script: Path, args: list[str], where: str, tmp_path: Path) -> list[str]:
    """A run script's dlrm_main.py command line, recorded by a stand-in horovodrun, parses."""
    recorder = tmp_path / "horovodrun"
    recorder.write_text('#!/bin/sh\necho "$@" > "$RECORD"\n')
    recorder.chmod(0o755)
    env = dict(
        os.environ,
        HOROVODRUN=str(recorder),
        RECORD=str(tmp_path / "argv"),
        MODEL_DIR=str(tmp_path / "models"),
        DATASET_PATH="/data/criteo_thr15",
        PYTHON="python3",
    )
    result = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        return [f"{where}: {script.name} exits {result.returncode}: {result.stderr[-2000:]}"]
    argv = (tmp_path / "argv").read_text().split()
    main = next(i for i, word in enumerate(argv) if word.endswith("dlrm_main.py"))
    return dlrm_flags_problem(argv[main + 1 :], where, parse_values=True)


def check_command(
    words: list[str], cwd: Path, where: str, tmp_path: Path, nested: bool = False
) -> tuple[Path, list[str]]:
    """Checks one command without running it; returns the directory after it and problems.

    ``cd DIR``: DIR exists. ``bash SCRIPT ...``: SCRIPT exists and answers ``--help``; a
    run script's dlrm_main.py flags parse; a command given to the script (run_docker.sh)
    is checked too, without ``--help``. ``python``: ``check_python``. ``horovodrun ...
    python ...``: horovodrun is installed, then ``check_python``. ``spark-submit ...
    FILE.py ...``: FILE's flags. ``pip install -r FILE``: FILE exists. Anything else is a
    problem: run the block, or teach this function.
    """
    program = words[0]
    if program == "cd":
        target = cwd / words[1]
        return (target, []) if target.is_dir() else (cwd, [f"{where}: no directory {words[1]}"])
    if program in ("bash", "sh") or program.startswith("./") or program.endswith(".sh"):
        by_bash = program in ("bash", "sh")
        script_word, args = (words[1], words[2:]) if by_bash else (program, words[1:])
        script = cwd / script_word
        if not script.is_file():
            return cwd, [f"{where}: script {script_word} does not exist (from {cwd})"]
        problems = []
        if not nested:
            status, text = help_of(("bash", str(script)), str(cwd))
            if status != 0:
                problems.append(f"{where}: bash {script_word} --help exits {status}: {text}")
        if script.parent.name == "run_scripts" and script.name.startswith("Horovod_"):
            problems += run_script_flags(script, args, where, tmp_path)
        elif args and args[0] in COMMAND_WORDS:  # a command the script runs (run_docker.sh)
            problems += check_command(args, cwd, where, tmp_path, nested=True)[1]
        return cwd, problems
    if program in ("python", "python3"):
        return cwd, check_python(words[1:], cwd, where, parse_values=True)
    if program == "horovodrun":
        if shutil.which("horovodrun", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}"):
            start = next((i for i, w in enumerate(words) if w in ("python", "python3")), None)
            if start is not None:
                return cwd, check_python(words[start + 1 :], cwd, where, parse_values=True)
            return cwd, [f"{where}: horovodrun without a python command"]
        return cwd, [f"{where}: horovodrun is not installed"]
    if program == "spark-submit":
        start = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
        if start is None:
            return cwd, [f"{where}: spark-submit without a .py file"]
        return cwd, check_python(words[start:], cwd, where, parse_values=False)
    if words[:3] == ["pip", "install", "-r"]:
        found = (cwd / words[3]).is_file()
        return cwd, [] if found else [f"{where}: no requirements file {words[3]}"]
    return cwd, [f"{where}: the doc test cannot check `{' '.join(words)}`; run the block instead"]


def check_block(block: Block, tmp_path: Path) -> list[str]:
    """Problems of every command of ``block``, followed through ``cd`` and variables."""
    cwd, problems, variables = ROOT, [], {}
    for command in commands(block.text):
        assignments, words = split_assignments(command)
        if not words:
            variables.update(assignments)
            continue
        expanded = []
        for word in words:
            # An unquoted $NAME set earlier in the block splits into words, as in bash.
            match = re.fullmatch(r"\$\{?(\w+)\}?", word)
            known = match is not None and match.group(1) in variables
            expanded += variables[match.group(1)].split() if known else [word]
        cwd, found = check_command(expanded, cwd, block.where, tmp_path)
        problems += found
    return problems


def check_inline(span: str, where: str) -> list[str]:
    """An inline ``python ...`` or ``horovodrun ... python ...`` command of the prose."""
    words = span.split()
    if words[0] == "horovodrun":
        words = words[next(i for i, w in enumerate(words) if w.startswith("python")) :]
    return check_python(words[1:], ROOT, where, parse_values=False)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
