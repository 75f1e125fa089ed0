"""The shell commands of README.md and docs/*.md, and how tests/test_docs.py treats each.

Every fenced block tagged as shell (```bash, sh, shell, console) must be preceded by a
directive, an HTML comment that Markdown does not render:

    <!-- doc-test: run [slow] [horovod] [spark] [fresh:VAR] [env:NAME=VALUE] [sub:"OLD=>NEW"] -->
    <!-- doc-test: check "why it cannot run here" -->

``run``: the block runs with ``bash -euo pipefail`` from a fresh copy of the checkout, on
small generated data (tests/test_docs.py says which variables point where). ``sub`` replaces
text before the run (to shrink sizes; an OLD that is not in the block fails the test),
``env`` sets a variable, ``fresh:VAR`` gives the block an empty directory in VAR instead of
the shared one, ``slow``/``horovod``/``spark`` are the pytest markers of the same names.
``check``: the block needs hardware or services a CPU machine lacks; the test checks every
command as far as it can without them (scripts and modules exist and answer ``--help``,
``dlrm_main.py`` flags parse, other flags are ones the program's ``--help`` names).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
# Programs that, starting a line of an untagged or non-shell block, mean it holds commands.
COMMAND_WORDS = {"python", "python3", "bash", "horovodrun", "spark-submit", "cd", "pip", "docker"}
_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*doc-test:(.*?)-->", re.S)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class DirectiveError(ValueError):
    """A doc-test directive that cannot be read; the message names file and line."""


@dataclass(frozen=True)
class Directive:
    """How tests/test_docs.py treats one block (module docstring)."""

    kind: str  # "run" or "check"
    reason: str = ""
    markers: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    fresh: tuple[str, ...] = ()
    subs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its directive."""

    path: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    directive: Directive | None
    directive_error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.language in SHELL_LANGUAGES


def parse_directive(body: str, where: str) -> Directive:
    """Parses the text after ``doc-test:``."""
    try:
        tokens = shlex.split(body)
    except ValueError as error:
        raise DirectiveError(f"{where}: doc-test directive: {error}") from None
    if not tokens or tokens[0] not in ("run", "check"):
        raise DirectiveError(f"{where}: doc-test directive must start with run or check")
    kind, rest = tokens[0], tokens[1:]
    if kind == "check":
        if len(rest) != 1 or not rest[0].strip():
            raise DirectiveError(f'{where}: write `doc-test: check "reason"` (one quoted reason)')
        return Directive("check", reason=rest[0])
    markers, env, fresh, subs = [], {}, [], []
    for token in rest:
        if token in ("slow", "horovod", "spark"):
            markers.append(token)
        elif token.startswith("env:") and "=" in token:
            name, value = token[4:].split("=", 1)
            env[name] = value
        elif token.startswith("fresh:") and token[6:]:
            fresh.append(token[6:])
        elif token.startswith("sub:") and "=>" in token:
            # A directive may wrap its lines; the text it names and inserts is one line.
            old, new = (" ".join(part.split()) for part in token[4:].split("=>", 1))
            subs.append((old, new))
        else:
            raise DirectiveError(f"{where}: doc-test run: unknown option {token!r}")
    return Directive("run", markers=tuple(markers), env=env, fresh=tuple(fresh), subs=tuple(subs))


def _directive_before(lines: list[str], fence: int, where: str) -> Directive | None:
    """The directive ending on the last non-blank line before line index ``fence``."""
    end = fence - 1
    while end >= 0 and not lines[end].strip():
        end -= 1
    if end < 0 or not lines[end].rstrip().endswith("-->"):
        return None
    start = end
    while start > 0 and "<!--" not in lines[start]:
        start -= 1
    match = _DIRECTIVE.search("\n".join(lines[start : end + 1]))
    return parse_directive(match.group(1), where) if match else None


def read_blocks(root: Path, relative: str) -> list[Block]:
    """Every fenced block of one Markdown file, with its directive (or its error)."""
    lines = (root / relative).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, language = opening.group(1), opening.group(2).lower()
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
        where = f"{relative}:{i + 1}"
        directive, error = None, None
        try:
            directive = _directive_before(lines, i, where)
        except DirectiveError as problem:
            error = str(problem)
        blocks.append(Block(relative, i + 1, language, "\n".join(body) + "\n", directive, error))
        i = j + 1
    return blocks


def looks_like_commands(block: Block) -> bool:
    """Whether a block not tagged as shell still starts lines with a command."""
    return any(ln.split()[0] in COMMAND_WORDS for ln in block.text.splitlines() if ln.strip())


def substitute(text: str, subs: tuple[tuple[str, str], ...], where: str) -> str:
    """Applies the directive's substitutions; each must match."""
    for old, new in subs:
        if old not in text:
            raise DirectiveError(f"{where}: sub {old!r} is not in the block any more")
        text = text.replace(old, new)
    return text


def commands(text: str) -> list[list[str]]:
    """Simple commands of a block: continuations joined, comments dropped, split at ; && ||."""
    joined = re.sub(r"\\\n", " ", text)
    result: list[list[str]] = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in (";", "&&", "||", "|", "&"):
                if current:
                    result.append(current)
                current = []
            else:
                current.append(token)
        if current:
            result.append(current)
    return result


def split_assignments(command: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading ``NAME=value`` words of a command, and the rest."""
    env: dict[str, str] = {}
    i = 0
    while i < len(command) and _ASSIGNMENT.match(command[i]):
        name, value = command[i].split("=", 1)
        env[name] = value
        i += 1
    return env, command[i:]


def inline_commands(root: Path, relative: str) -> list[tuple[str, str]]:
    """Inline code spans outside fenced blocks that hold a ``python`` command."""
    text = (root / relative).read_text()
    text = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`]+)`", text)
    found = []
    for span in spans:
        span = " ".join(span.split())
        if re.match(r"(python3? (-m \S+|\S+\.py)|horovodrun .* python3? )", span):
            found.append((relative, span))
    return found
