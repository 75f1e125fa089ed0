"""The doc-test machinery itself: directives, block reading, command splitting, checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_blocks import (
    DirectiveError,
    commands,
    looks_like_commands,
    parse_directive,
    read_blocks,
    split_assignments,
    substitute,
)
from tests.doc_checks import ROOT, check_command, check_inline, github_anchor


def test_directives_parse() -> None:
    run = parse_directive(
        ' run slow spark fresh:DATA_DIR env:ROWS=5 sub:"--n 100=>--n 2\n  --m 3" sub:8g=>1g ',
        "x.md:1",
    )
    assert run.kind == "run" and run.markers == ("slow", "spark")
    assert run.env == {"ROWS": "5"} and run.fresh == ("DATA_DIR",)
    assert run.subs == (("--n 100", "--n 2 --m 3"), ("8g", "1g"))
    check = parse_directive(' check "needs 8 MLUs" ', "x.md:1")
    assert check.kind == "check" and check.reason == "needs 8 MLUs"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("skip", "must start with run or check"),
        ("check", "one quoted reason"),
        ("check needs MLUs", "one quoted reason"),
        ("run fast", "unknown option 'fast'"),
        ('run sub:"unclosed', "No closing quotation"),
    ],
)
def test_bad_directives_name_the_place(body: str, expected: str) -> None:
    with pytest.raises(DirectiveError, match=expected) as error:
        parse_directive(body, "docs/x.md:7")
    assert str(error.value).startswith("docs/x.md:7: ")


def test_blocks_are_read_with_their_directives(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(
        "text\n\n"
        "<!-- doc-test: run\n  slow -->\n"
        "```bash\necho one\n```\n"
        "1. step\n"
        '   <!-- doc-test: check "why" -->\n'
        "   ```bash\n   cd x && ls\n   ```\n"
        "```bash\necho unclassified\n```\n"
        "```\npython -m tools.x\n```\n"
        "```yaml\na: 1\n```\n"
        "<!-- doc-test: nonsense -->\n```bash\necho bad\n```\n"
    )
    blocks = read_blocks(tmp_path, "a.md")
    assert [(b.line, b.language) for b in blocks] == [
        (5, "bash"),
        (10, "bash"),
        (13, "bash"),
        (16, ""),
        (19, "yaml"),
        (23, "bash"),
    ]
    assert blocks[0].directive.markers == ("slow",) and blocks[0].text == "echo one\n"
    assert blocks[1].directive.reason == "why" and blocks[1].text == "cd x && ls\n"
    assert blocks[2].directive is None and blocks[2].directive_error is None
    assert looks_like_commands(blocks[3]) and not looks_like_commands(blocks[4])
    assert "a.md:23" in blocks[5].directive_error


def test_commands_split_lines_continuations_and_lists() -> None:
    text = 'cd preproc && ./p.sh CPU 15  # comment\nA="x y" \\\n  python -m m --f 1; ls\n'
    assert commands(text) == [
        ["cd", "preproc"],
        ["./p.sh", "CPU", "15"],
        ["A=x y", "python", "-m", "m", "--f", "1"],
        ["ls"],
    ]
    env, rest = split_assignments(["A=1", "B=2", "bash", "x=y"])
    assert env == {"A": "1", "B": "2"} and rest == ["bash", "x=y"]


def test_substitutions_must_match() -> None:
    assert substitute("a 8g b 8g", (("8g", "1g"),), "w") == "a 1g b 1g"
    with pytest.raises(DirectiveError, match="'9g' is not in the block"):
        substitute("a 8g", (("9g", "1g"),), "w")


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["cd", "no_such_dir"], "no directory no_such_dir"),
        (["bash", "tools/no_such.sh"], "script tools/no_such.sh does not exist"),
        (["python", "-m", "tools.no_such"], "no module tools.no_such"),
        (["python", "dlrm_main.py", "--no_such_flag"], "dlrm_main.py --no_such_flag"),
        (["python", "dlrm_main.py", "--dataset_path", "/d", "--epochs", "0"], "epochs"),
        (["python", "-m", "tools.generate_criteo", "--no_such_flag"], "has no flag --no_such"),
        (["pip", "install", "-r", "no_such.txt"], "no requirements file"),
        (["make", "all"], "cannot check `make all`"),
    ],
)
def test_checks_find_what_rotted(words: list[str], expected: str, tmp_path: Path) -> None:
    _, problems = check_command(words, ROOT, "README.md:1", tmp_path)
    assert any(expected in p for p in problems), problems


def test_checks_pass_what_exists(tmp_path: Path) -> None:
    cwd, problems = check_command(["cd", "preproc"], ROOT, "w", tmp_path)
    assert cwd == ROOT / "preproc" and not problems
    assert check_command(["./prepare_dataset.sh", "CPU", "15"], cwd, "w", tmp_path)[1] == []
    flags = ["--dataset_path", "/d", "--mode", "inference", "--device", "cpu"]
    assert check_command(["python", "dlrm_main.py", *flags], ROOT, "w", tmp_path)[1] == []
    assert check_inline("python dlrm_main.py --mode eval|inference --dataset_path DIR", "w") == []
    assert check_inline("python dlrm_main.py --model_typo dcnv2", "w") != []


def test_github_anchors() -> None:
    assert github_anchor("Running `dlrm_main.py`") == "running-dlrm_mainpy"
    assert github_anchor("Your own data: CSV or TSV") == "your-own-data-csv-or-tsv"
