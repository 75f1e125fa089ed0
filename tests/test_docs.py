"""A documented command cannot rot: every shell block of README.md and docs/*.md is tested.

Each block is classified by the directive before it (tests/doc_blocks.py). ``run`` blocks
run from a fresh copy of the checkout with these variables, on small generated data:

- ``RAW_DATA_DIR``: 3 generated Criteo day files (30,000 rows);
- ``DATA_DIR``: holds ``criteo_thr15``, those days preprocessed with threshold 15 (shared
  by the blocks; ``fresh:DATA_DIR`` gives a block an empty one to write into);
- ``MODEL_DIR``, ``TMPDIR``: empty directories of the block;
- ``PREPROC_WORKERS=2``, ``PATH`` starting with this interpreter's directory and
  ``DLRM_VENV`` set to its virtualenv, so that ``python`` and the set-up are this test's.

``check`` blocks are checked without running them (tests/doc_checks.py says how). Inline
``python ...`` commands in the prose are checked the same way, and every relative link
must lead to a file and heading that exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_blocks import (
    Block,
    DirectiveError,
    inline_commands,
    looks_like_commands,
    read_blocks,
    substitute,
)
from tests.doc_checks import check_block, check_inline, github_anchor

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
BLOCKS = [block for doc in DOCS for block in read_blocks(ROOT, doc)]
SHELL = [block for block in BLOCKS if block.is_shell]
# Not copied into a block's checkout: caches, and what the quick start, the user or the
# docs' own examples write into the repository root.
SKIPPED = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv"}
SKIPPED_AT_ROOT = {"results", "data", "clicks"}
RAW_ROWS = 30_000


def _blocks(kind: str) -> list:
    chosen = [b for b in SHELL if b.directive is not None and b.directive.kind == kind]
    return [
        pytest.param(b, marks=[getattr(pytest.mark, m) for m in b.directive.markers], id=b.where)
        for b in chosen
    ]


def test_every_shell_block_is_classified() -> None:
    problems = []
    for block in BLOCKS:
        if block.directive_error:
            problems.append(block.directive_error)
        elif block.is_shell and block.directive is None:
            problems.append(
                f"{block.where}: shell block without a directive; put "
                '<!-- doc-test: run ... --> or <!-- doc-test: check "reason" --> before it '
                "(tests/doc_blocks.py)"
            )
        elif not block.is_shell and looks_like_commands(block):
            problems.append(
                f"{block.where}: commands in a ```{block.language} block; tag it ```bash "
                "and classify it"
            )
    assert SHELL, "no shell blocks found in README.md and docs/"
    assert not problems, "\n".join(problems)


def test_run_substitutions_still_match() -> None:
    # A fast test of what the slow runs would find first: a doc edit that leaves a
    # directive's substitution behind.
    problems = []
    for block in SHELL:
        if block.directive is not None and block.directive.kind == "run":
            try:
                substitute(block.text, block.directive.subs, block.where)
            except DirectiveError as error:
                problems.append(str(error))
    assert not problems, "\n".join(problems)


# --- run blocks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def doc_data(tmp_path_factory) -> dict[str, Path]:
    """Small generated Criteo days and their threshold-15 dataset, shared by the runs."""
    from preproc.cli import main as preprocess
    from tools.generate_criteo import generate

    base = tmp_path_factory.mktemp("doc_data")
    days = generate(str(base / "raw"), RAW_ROWS, 3, seed=0)
    dataset = base / "data" / "criteo_thr15"
    argv = ["--input_files", *days, "--output_dir", str(dataset)]
    assert preprocess([*argv, "--frequency_threshold", "15", "--num_workers", "2"]) == 0
    return {"raw": base / "raw", "data": base / "data"}


def copy_checkout(target: Path) -> None:
    """This checkout's files as a user has them, without caches and run outputs."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in SKIPPED}
        if Path(directory) == ROOT:
            skipped |= {n for n in names if n in SKIPPED_AT_ROOT}
        if Path(directory) == ROOT / "docker":
            skipped |= {"cache"} & set(names)
        return skipped

    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)


def run_env(data: dict[str, Path], tmp_path: Path, fresh: tuple[str, ...]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATASET_PATH", "PYTHON")}
    env.pop("HOROVODRUN", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if sys.prefix != sys.base_prefix:
        env["DLRM_VENV"] = sys.prefix
    for name in ("models", "tmp"):
        (tmp_path / name).mkdir()
    env.update(
        RAW_DATA_DIR=str(data["raw"]),
        DATA_DIR=str(data["data"]),
        MODEL_DIR=str(tmp_path / "models"),
        TMPDIR=str(tmp_path / "tmp"),
        PREPROC_WORKERS="2",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    for name in fresh:
        env[name] = str(tmp_path / f"fresh_{name.lower()}")
        Path(env[name]).mkdir()
    return env


def require_spark() -> None:
    pytest.importorskip("pyspark", reason="PySpark is not installed (requirements-spark.txt)")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java (17 or later) on PATH")


@pytest.mark.parametrize("block", _blocks("run"))
def test_run_block(block: Block, doc_data, tmp_path) -> None:
    directive = block.directive
    if "spark" in directive.markers:
        require_spark()
    script = substitute(block.text, directive.subs, block.where)
    repo = tmp_path / "repo"
    copy_checkout(repo)
    env = run_env(doc_data, tmp_path, directive.fresh)
    env.update(directive.env)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=850,
    )
    output = result.stdout.splitlines()
    assert result.returncode == 0, (
        f"{block.where} failed (exit status {result.returncode}); ran:\n{script}\n"
        + "\n".join(output[-60:])
    )


# --- check blocks -------------------------------------------------------------------------


@pytest.mark.parametrize("block", _blocks("check"))
def test_check_block(block: Block, tmp_path) -> None:
    problems = check_block(block, tmp_path)
    assert not problems, f"({block.directive.reason})\n" + "\n".join(problems)


# --- prose --------------------------------------------------------------------------------


def test_inline_commands_name_existing_programs_and_flags() -> None:
    problems = []
    for doc in DOCS:
        for _, span in inline_commands(ROOT, doc):
            problems += check_inline(span, f"{doc}: `{span}`")
    assert not problems, "\n".join(problems)


def test_relative_links_lead_to_files_and_headings() -> None:
    problems = []
    for doc in [*DOCS, "DEVELOPERS.md"]:
        text = re.sub(r"^\s*```.*?^\s*```", "", (ROOT / doc).read_text(), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (ROOT / doc).parent / path if path else ROOT / doc
            if not file.exists():
                problems.append(f"{doc}: link to missing {target}")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)
                if anchor not in {github_anchor(h) for h in headings}:
                    problems.append(f"{doc}: link to missing heading {target}")
    assert not problems, "\n".join(problems)
