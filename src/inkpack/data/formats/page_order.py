"""Reading order of a PAGE-XML page's TextLines.

Regions are ordered by the page's ``ReadingOrder`` (``OrderedGroup`` children by ``@index``,
``UnorderedGroup`` children in document order, groups nested to any depth, a group's own
``@regionRef`` before its children). A region nested in a referenced one (a table cell in
a ``TableRegion``) takes its ancestor's place. Regions the ``ReadingOrder`` does not name
follow, by Transkribus' ``custom="readingOrder {index:N;}"`` when they carry it, else in
document order. Lines inside a region follow their own ``custom`` reading-order index when
present, else document order.
"""

from __future__ import annotations

import re

from lxml import etree

_GROUPS = {"OrderedGroup", "UnorderedGroup", "OrderedGroupIndexed", "UnorderedGroupIndexed"}
_REFS = {"RegionRef", "RegionRefIndexed"}
_CUSTOM_INDEX = re.compile(r"readingOrder\s*\{[^}]*?index\s*:\s*(-?\d+)")
_LAST = float("inf")


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _index(el: etree._Element) -> float:
    try:
        return int(el.get("index"))
    except (TypeError, ValueError):
        return _LAST


def custom_index(el: etree._Element) -> float:
    """Transkribus' ``custom="readingOrder {index:N;}"``, or infinity."""
    m = _CUSTOM_INDEX.search(el.get("custom") or "")
    return int(m.group(1)) if m else _LAST


def reading_order_ranks(page: etree._Element) -> dict[str, int]:
    """Region id → position in the page's ``ReadingOrder`` (first mention wins)."""
    ro = next((c for c in page if _local(c.tag) == "ReadingOrder"), None)
    order: list[str] = []
    stack = [c for c in reversed(ro) if _local(c.tag) in _GROUPS] if ro is not None else []
    while stack:  # depth-first, without recursion
        item = stack.pop()
        if _local(item.tag) in _REFS:
            order.append(item.get("regionRef") or "")
            continue
        if item.get("regionRef"):
            order.append(item.get("regionRef"))
        kids = [(pos, c) for pos, c in enumerate(item) if _local(c.tag) in _GROUPS | _REFS]
        if _local(item.tag).startswith("Ordered"):
            kids.sort(key=lambda pc: (_index(pc[1]), pc[0]))
        stack.extend(c for _, c in reversed(kids))
    ranks: dict[str, int] = {}
    for rid in order:
        if rid:
            ranks.setdefault(rid, len(ranks))
    return ranks


def lines_in_reading_order(page: etree._Element) -> list[etree._Element]:
    lines = [el for el in page.iter() if _local(el.tag) == "TextLine"]
    if not lines:
        return []
    ranks = reading_order_ranks(page)
    groups: dict[int, tuple[etree._Element, list]] = {}
    for pos, line in enumerate(lines):
        parent = line.getparent()
        groups.setdefault(id(parent), (parent, []))[1].append((pos, line))
    keyed = []
    for first, (parent, members) in enumerate(groups.values()):
        anchor = next((a for a in parent.iterancestors() if a.get("id") in ranks), None) \
            if parent.get("id") not in ranks else parent
        if anchor is not None:
            key = (0, ranks[anchor.get("id")], custom_index(parent) if anchor is not parent else 0, first)
        else:
            key = (1, custom_index(parent), 0, first)
        members.sort(key=lambda pl: (custom_index(pl[1]), pl[0]))
        keyed.append((key, [line for _, line in members]))
    keyed.sort(key=lambda kv: kv[0])
    return [line for _, members in keyed for line in members]
