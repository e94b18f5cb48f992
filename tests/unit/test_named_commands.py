"""Every ``replication`` command that a doc, an error message or a help text names exists.

The names are collected from the docs (README.md, docs/, migrations/README.md,
examples/) and from the string literals of the library (messages, epilogs,
docstrings). Which words are commands comes from the parser itself: after
``replication``, the group, then a subcommand when the group has some; options
and arguments after them are not commands. Each distinct command runs with
``--help``, which argparse answers with exit 0 only for a command it knows.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from replication.cli import build_parser, main
from tests.paths import ROOT

PARSER = build_parser()

# ``replication`` (or ``python -m replication.cli``) as a command: not part of another
# dotted name, an option or a word (``replication.manifest``, ``--replication``,
# ``event-driven replication`` stay out).
MENTION = re.compile(r"(?<![\w.\-])replication(?:\.cli)?(?=\s)")
WORD = re.compile(r"[a-z][a-z0-9-]*")
# A token ends a command when punctuation or a closing quote follows it.
TRAILING = re.compile(r"[`'\".,;:!?)\]]+$")
OPENING = "`'\""
NOT_A_COMMAND_AFTER = ("from", "import", "install")  # Python imports, pip install


@dataclass(frozen=True)
class Naming:
    """A command named somewhere: its words after ``replication``, and where."""

    words: tuple[str, ...]
    file: str
    line: int


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The commands a parser takes next (its subparsers' choices), or none."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_words(rest: str, looks_like_code: bool) -> tuple[str, ...] | None:
    """The command ``rest`` (the text after ``replication``) starts with, if it names one.

    Walks the parser: top-level options (with their values) are skipped, then
    each word is taken while the parser at that point has subcommands. A word
    the parser does not know is kept, so that a test fails on it; the first
    word counts only when it is a known group, or the mention looks like a
    command (in code, quoted, or followed by an option), since
    ``the replication lag`` is prose.
    """
    tokens = rest.split()
    parser = PARSER
    words: list[str] = []
    index = 0
    while index < len(tokens) and tokens[index].startswith("-"):
        option = tokens[index].split("=", 1)[0]
        action = parser._option_string_actions.get(TRAILING.sub("", option))
        if action is None or TRAILING.search(tokens[index]):
            return None  # ``replication --version`` and the like: not a command
        takes_value = action.nargs != 0 and "=" not in tokens[index]
        index += 2 if takes_value else 1
    for token in tokens[index:]:
        choices = subcommands(parser)
        word = TRAILING.sub("", token)
        if not choices or not WORD.fullmatch(word):
            break
        words.append(word)
        if word not in choices or word != token:
            break
        parser = choices[word]
    if not words:
        return None
    if words[0] in subcommands(PARSER) or looks_like_code:
        return tuple(words)
    after = tokens[index + len(words) : index + len(words) + 1]
    return tuple(words) if after and after[0].startswith("--") else None


def mentions(text: str, in_code: bool) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Each command ``text`` names, with the offset where it is named.

    ``in_code``: ``text`` is one line of a code block, so a command ends with it.
    """
    for found in MENTION.finditer(text):
        start = found.start()
        before = re.sub(r"\S*/$", "", text[max(0, start - 200) : start])  # .venv/bin/
        preceding = before.split()[-1:]
        if preceding and preceding[0] in NOT_A_COMMAND_AFTER:
            continue
        quoted = before[-1:] in tuple(OPENING)
        if quoted and before[:-1].split()[-1:] and before[:-1].split()[-1].startswith("-"):
            continue  # an option's value: -m "replication tables"
        rest = text[found.end() : found.end() + 300]  # a command is shorter than this
        words = command_words(rest.split("\n", 1)[0] if in_code else rest, in_code or quoted)
        if words is not None:
            yield start, words


def markdown_segments(text: str) -> Iterator[tuple[int, str, bool]]:
    """(first line, text, is code) of each fenced code block line and each run of prose."""
    prose: list[str] = []
    prose_start = 1
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            if not fenced and prose:
                yield prose_start, "\n".join(prose), False
            prose, prose_start, fenced = [], number + 1, not fenced
        elif fenced:
            yield number, line, True
        else:
            prose.append(line)
    if prose:
        yield prose_start, "\n".join(prose), False


def python_strings(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line, text, False) of each string literal; an f-string's fields read as ``{}``."""
    inside_fstrings: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.JoinedStr):
            inside_fstrings.update(id(v) for v in node.values)
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            yield node.lineno, "".join(str(p) for p in parts), False
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in inside_fstrings
        ):
            yield node.lineno, node.value, False


def namings_in(path: Path) -> Iterator[Naming]:
    """The commands one file names."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return  # not text: names nothing
    relative = str(path.relative_to(ROOT))
    if path.suffix == ".md":
        segments = markdown_segments(text)
    elif path.suffix == ".py" and relative.startswith("replication/"):
        segments = python_strings(text)
    else:
        segments = iter([(1, text, False)])
    for first_line, segment, in_code in segments:
        for offset, words in mentions(segment, in_code):
            yield Naming(words, relative, first_line + segment.count("\n", 0, offset))


def named_files() -> list[Path]:
    """The docs, the examples and the library's modules."""
    docs = [ROOT / "README.md", ROOT / "migrations" / "README.md", *(ROOT / "docs").rglob("*.md")]
    examples = [
        p for p in (ROOT / "examples").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ]
    return sorted({*docs, *examples, *(ROOT / "replication").rglob("*.py")})


def all_namings() -> list[Naming]:
    """Every command every file names."""
    return [n for path in named_files() if path.exists() for n in namings_in(path)]


def by_command_and_file() -> list[tuple[tuple[str, ...], str, list[int]]]:
    """One case per command and the file naming it, with the lines it is named on."""
    lines: dict[tuple[tuple[str, ...], str], list[int]] = defaultdict(list)
    for naming in all_namings():
        lines[naming.words, naming.file].append(naming.line)
    return [(words, file, sorted(found)) for (words, file), found in sorted(lines.items())]


CASES = by_command_and_file()


def help_exit_code(words: tuple[str, ...]) -> int | str | None:
    """The exit code of ``replication <words> --help``, run in-process."""
    try:
        main([*words, "--help"])
    except SystemExit as done:
        return done.code
    return "returned without exiting"


@pytest.mark.parametrize(
    ("command", "file", "lines"),
    CASES,
    ids=[f"{' '.join(words)}@{file}" for words, file, _ in CASES],
)
def test_named_command_exists(
    command: tuple[str, ...], file: str, lines: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    code = help_exit_code(command)
    err = capsys.readouterr().err.strip().splitlines()
    where = ", ".join(f"{file}:{line}" for line in lines)
    assert code == 0, (
        f"{where} names 'replication {' '.join(command)}', which the command does not "
        f"accept: {err[-1] if err else code}"
    )


def test_the_collection_finds_commands_in_docs_and_in_messages() -> None:
    found = {(words, file) for words, file, _ in CASES}
    assert (("dlq", "replay"), "docs/runbook-dlq.md") in found
    assert (("contracts", "lock"), "replication/cli/contracts.py") in found
    assert (("mirrors", "render"), "replication/consumer/wiring.py") in found
    assert any(words == ("consume",) and file == "README.md" for words, file in found)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            "render it again with 'replication mirrors statements --service orders'",
            ("mirrors", "statements"),
        ),
        ("``replication mirrors\nstatements`` writes one", ("mirrors", "statements")),
        ("$ .venv/bin/replication migrations upgrade --service orders", ("migrations", "upgrade")),
        ("Example: replication dlq list --service orders", ("dlq", "list")),
        ("run `replication init` first", ("init",)),
        ("python -m replication.cli dlq show --service orders", ("dlq", "show")),
        ("replication setup --service orders", ("setup",)),
        ("`replication dlq ...` commands", ("dlq",)),
        ('replication migrations generate -m "replication tables"', ("migrations", "generate")),
        (
            "replication --contracts contracts manifests validate examples/",
            ("manifests", "validate"),
        ),
    ],
)
def test_commands_are_read_up_to_what_the_parser_takes(text: str, named: tuple[str, ...]) -> None:
    assert [words for _, words in mentions(text, in_code=False)] == [named]


@pytest.mark.parametrize(
    "text",
    [
        "Event-driven replication between business lines",
        "shows the replication lag and the orders query",
        "from replication import decode_event, deleted",
        "from replication.cli import main",
        "the replication.manifest module",
        "pip install replication[all]",
        "``replication`` has no command here",
        "replication --version",
    ],
)
def test_prose_and_imports_name_no_command(text: str) -> None:
    assert list(mentions(text, in_code=False)) == []


def test_a_fenced_code_line_names_a_command_even_if_unknown() -> None:
    segments = list(
        markdown_segments("Run:\n\n```sh\nreplication init\nfrom replication import x\n```\n")
    )
    assert [(line, code) for line, _, code in segments] == [(1, False), (4, True), (5, True)]
    assert [list(mentions(text, code)) for _, text, code in segments] == [[], [(0, ("init",))], []]


@pytest.mark.parametrize(
    "group", sorted(g for g, p in subcommands(PARSER).items() if not subcommands(p))
)
def test_a_group_without_subcommands_is_accepted_and_takes_no_second_word(group: str) -> None:
    assert help_exit_code((group,)) == 0
    text = f"`replication {group} --service orders` and replication {group} runs until stopped"
    assert [words for _, words in mentions(text, in_code=False)] == [(group,), (group,)]


def test_the_groups_without_subcommands_include_the_long_running_ones() -> None:
    without = {g for g, p in subcommands(PARSER).items() if not subcommands(p)}
    assert {"relay", "consume", "demo"} <= without
