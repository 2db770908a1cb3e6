"""Check the catalogues `make translations` has just updated, before it compiles them.

Every message must be translated (each plural form too), none may be marked fuzzy, and each
translation must use exactly the named placeholders of its message (`%(added)s` …): a missing one
hides a value, an unknown one breaks the formatting at run time. Prints each problem and exits 1,
so a catalogue with holes is never compiled. tests/i18n/test_catalogue.py applies the same checks to
the messages it extracts from the code.

    python translations/check.py [messages.po ...]   (default: every translations/*/LC_MESSAGES)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"%\((\w+)\)")


def placeholders(text: str) -> set[str]:
    """The names of the `%(name)s` placeholders in a text."""
    return set(PLACEHOLDER.findall(text))


def _forms(value: str | Iterable[str] | None) -> list[str]:
    """A message id or translation as a list of its forms (one, or one per plural form)."""
    if value is None:
        return [""]
    return [value] if isinstance(value, str) else list(value)


def message_problems(message: Message) -> list[str]:
    """What is wrong with one message of a catalogue; nothing for the header."""
    if not message.id:
        return []
    ids = _forms(message.id)
    label = repr(ids[0])
    if message.fuzzy:
        return [f"fuzzy: {label}"]
    translations = _forms(message.string)
    if not all(text.strip() for text in translations):
        return [f"untranslated: {label}"]
    # Plural forms may each use any of the values of the singular and the plural message.
    expected = set().union(*(placeholders(text) for text in ids))
    return [
        f"placeholders differ: {label} has {sorted(expected)}, its translation {text!r} has "
        f"{sorted(placeholders(text))}"
        for text in translations
        if placeholders(text) != expected
    ]


def catalogue_problems(catalogue: Catalog) -> list[str]:
    """Every problem of a catalogue, the header's fuzzy mark included (pybabel compile skips a
    catalogue whose header is fuzzy, which would leave the language untranslated)."""
    found = ["the header is marked fuzzy"] if catalogue.fuzzy else []
    for message in catalogue:
        found.extend(message_problems(message))
    return found


def read_catalogue(path: Path) -> Catalog:
    locale = path.parent.parent.name
    with path.open("rb") as fh:
        return read_po(fh, locale=locale)


def main(paths: list[str]) -> int:
    files = [Path(p) for p in paths] or sorted(HERE.glob("*/LC_MESSAGES/messages.po"))
    failed = False
    for path in files:
        for problem in catalogue_problems(read_catalogue(path)):
            print(f"{path}: {problem}", file=sys.stderr)
            failed = True
    if failed:
        print("Translate these in the .po file, then run `make translations` again.", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
