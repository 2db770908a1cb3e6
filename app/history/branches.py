"""Branches of a conversation: versions of a turn (Edit / Regenerate) and the path one follows.

A conversation is a tree of turns. A follow-up is a child of the turn it continues; another
version of a turn (made with `replaces`) is that turn's sibling: same parent, same turn number,
and `sibling_of` naming the turn's first version. Deleted turns are left out, their children
hang from the nearest live ancestor, as in `chain()`.

These functions work on the live turns of one conversation (oldest first, as
`HistoryStore.conversation` returns them), so a page needs one read of the conversation.
"""

from __future__ import annotations

from collections.abc import Callable

from .model import Entry, Permalink

MAX_DEPTH = 10_000  # bound on walking up through deleted turns (a hand-edited file may loop)

ParentOf = Callable[[Permalink], "Permalink | None"]  # a deleted turn → the turn it hung from


def versions(turns: list[Entry], entry: Entry) -> list[Entry]:
    """The live versions of `entry`'s turn among `turns`, oldest first, `entry` included."""
    found = [t for t in turns if t.versions_of == entry.versions_of]
    return found if any(t.id == entry.id for t in found) else [entry]


def live_parents(turns: list[Entry], parent_of_deleted: ParentOf) -> dict[Permalink, Permalink | None]:
    """Each turn's nearest live ancestor among `turns` (None for a first turn): a deleted turn
    in between is skipped by asking `parent_of_deleted` where it hung."""
    live = {t.address for t in turns}
    skipped: dict[Permalink, Permalink | None] = {}
    parents: dict[Permalink, Permalink | None] = {}
    for turn in turns:
        link = turn.parent
        for _ in range(MAX_DEPTH):
            if link is None or link in live:
                break
            if link not in skipped:
                skipped[link] = parent_of_deleted(link)
            link = skipped[link]
        parents[turn.address] = link if link in live else None
    return parents


def branch_path(turns: list[Entry], entry: Entry, parent_of_deleted: ParentOf) -> list[Entry]:
    """The turns shown with `entry`: its ancestors, itself, then the newest branch below it
    (at each turn, the child whose subtree holds the most recent turn)."""
    by_link = {t.address: t for t in turns}
    if entry.address not in by_link:
        return [entry]
    parents = live_parents(turns, parent_of_deleted)
    children: dict[Permalink, list[Permalink]] = {}
    for turn in turns:
        parent = parents[turn.address]
        if parent is not None:
            children.setdefault(parent, []).append(turn.address)
    order = {t.address: n for n, t in enumerate(turns)}
    latest = dict(order)
    for turn in reversed(turns):  # children come after their parent: fold newest-first upwards
        parent = parents[turn.address]
        if parent is not None:
            latest[parent] = max(latest[parent], latest[turn.address])
    path = [entry.address]
    for _ in range(len(turns)):
        up = parents[path[0]]
        if up is None:
            break
        path.insert(0, up)
    for _ in range(len(turns)):
        below = children.get(path[-1])
        if not below:
            break
        path.append(max(below, key=lambda link: latest[link]))
    return [by_link[link] for link in path]


def newest(turns: list[Entry]) -> Entry | None:
    """The conversation's most recent live turn: the one History lists it as."""
    return turns[-1] if turns else None
