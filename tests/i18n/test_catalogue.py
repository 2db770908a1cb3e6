"""The German catalogue holds every message the app can show, and `make translations` says when it
does not.

The messages are extracted from the code the way `make translations` extracts them (Babel with
babel.cfg over app/ and templates/), plus those the code builds from tables at run time: the
failures an entry stores by kind, and the texts Werkzeug gives the error pages.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from werkzeug.exceptions import default_exceptions

from app.messages import FAILURES, HTTP_TEXTS, PLACEHOLDER, failure

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "translations" / "de" / "LC_MESSAGES" / "messages.po"
COMPILED = CATALOGUE.with_suffix(".mo")
CHECK = ROOT / "translations" / "check.py"


def _check_module() -> ModuleType:
    """translations/check.py, the checker `make translations` runs (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("translations_check", CHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _check_module()


def _key(message_id: Any) -> str:
    """A message's id as the catalogue is looked up by: the singular of a plural message."""
    return message_id if isinstance(message_id, str) else message_id[0]


def extracted_messages() -> dict[str, str]:
    """Every message Babel extracts from app/ and templates/ with babel.cfg, by id, with where it
    was found."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        found.setdefault(_key(message), f"{filename}:{lineno}")
    return found


def table_messages() -> dict[str, str]:
    """The messages the app builds from its tables: every failure kind, Werkzeug's texts."""
    found = {str(msgid): f"FAILURES[{kind!r}]" for kind, msgid in FAILURES.items()}
    for status, texts in HTTP_TEXTS.items():
        found.update({str(text): f"HTTP_TEXTS[{status}]" for text in texts if text})
    return found


@pytest.fixture(scope="module")
def catalogue() -> Catalog:
    return check.read_catalogue(CATALOGUE)


def test_the_extraction_finds_the_messages_of_the_code_and_of_the_templates():
    found = extracted_messages()

    assert "Please enter a prompt." in found  # app/generation/base.py, N_
    assert "Imported %(added)s entries, skipped %(skipped)s already present." in found  # N_ with values
    assert "Generate code" in found  # a template's _()
    assert "%(count)s entry matches “%(q)s”." in found  # a template's plural {% trans %}
    assert len(found) > 250


def test_every_message_the_app_can_show_is_translated_in_the_german_catalogue(catalogue):
    messages = {**extracted_messages(), **table_messages()}

    problems = []
    for msgid, where in sorted(messages.items()):
        entry = catalogue.get(msgid)
        if entry is None:
            problems.append(f"missing: {msgid!r} ({where})")
        else:
            problems.extend(f"{p} ({where})" for p in check.message_problems(entry))
    assert problems == []


def test_the_catalogue_has_no_fuzzy_header_and_no_problem_anywhere(catalogue):
    assert check.catalogue_problems(catalogue) == []


def test_the_compiled_catalogue_is_the_one_messages_po_compiles_to(catalogue):
    with COMPILED.open("rb") as fh:
        compiled = {_key(m.id): m.string for m in read_mo(fh) if m.id}

    written = {_key(m.id): m.string for m in catalogue if m.id}
    # read_mo gives plural forms as lists, read_po as tuples.
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in written.items()} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in compiled.items()
    }, "messages.mo is stale: run `make translations`"


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_each_failure_kind_makes_its_english_message_from_named_values(kind):
    names = PLACEHOLDER.findall(FAILURES[kind])
    values = {name: f"<{name}>" for name in names}

    message = failure(kind, **values)

    assert message.kind == kind and message.values == values
    assert all(f"<{name}>" in message for name in names)
    assert "%(" not in message


def _failure_calls() -> list[tuple[str, int, str, set[str]]]:
    """Every `failure("kind", name=…)` call in app/ (also under an alias such as
    `failure_message`): where, the kind, the names of its values."""
    calls = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("failure", "failure_message")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names = {k.arg for k in node.keywords if k.arg}
                calls.append((str(path.relative_to(ROOT)), node.lineno, node.args[0].value, names))
    return calls


def test_every_failure_raised_in_the_code_names_a_kind_with_exactly_its_values():
    calls = _failure_calls()

    wrong = [
        f"{path}:{line}: {kind!r} with {sorted(names)}"
        for path, line, kind, names in calls
        if kind not in FAILURES or names != set(PLACEHOLDER.findall(FAILURES[kind]))
    ]
    assert len(calls) > 40  # the scan sees the raise sites (providers, images, generation)
    assert wrong == []


@pytest.mark.parametrize("status", sorted(HTTP_TEXTS))
def test_the_error_page_texts_marked_for_the_catalogue_are_werkzeugs_own(status):
    name, description = HTTP_TEXTS[status]
    werkzeug = default_exceptions[status]()

    assert name == werkzeug.name
    assert description is None or description == werkzeug.description


# -- the check `make translations` runs ------------------------------------------------------------


def run_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_check_passes_the_german_catalogue():
    result = run_check()

    assert (result.returncode, result.stderr) == (0, "")


def test_the_check_fails_naming_untranslated_fuzzy_and_misplaced_placeholder_messages(tmp_path):
    broken = tmp_path / "de" / "LC_MESSAGES" / "messages.po"
    broken.parent.mkdir(parents=True)
    shutil.copy(CATALOGUE, broken)
    text = broken.read_text(encoding="utf-8")
    text = text.replace('msgstr "Falsches Passwort."', 'msgstr ""', 1)
    text = text.replace('msgid "Entry deleted."', '#, fuzzy\nmsgid "Entry deleted."', 1)
    text = text.replace("%(added)s Einträge importiert", "%(count)s Einträge importiert", 1)
    broken.write_text(text, encoding="utf-8")

    result = run_check(broken)

    assert result.returncode == 1
    assert "untranslated: 'Wrong password.'" in result.stderr
    assert "fuzzy: 'Entry deleted.'" in result.stderr
    assert "placeholders differ: 'Imported %(added)s entries" in result.stderr
    assert result.stderr.count(str(broken)) == 3  # those three, and nothing else
