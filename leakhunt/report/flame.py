"""Icicle (top-down flame) graphs of outstanding bytes and of growth, as inline SVG.

Stacks are merged by function from the outermost frame (``main``, at the top) down to the
allocating one, so the widest boxes under ``main`` are where the memory is held. A box's width is
its share of the total; its ``<title>`` and ``data-*`` attributes carry the details the report's
inline script shows on hover (and the browser shows without any script). Every text is escaped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from leakhunt.model import Finding, Frame
from leakhunt.report.svg import format_value

WIDTH = 1200
ROW = 18
MIN_BOX = 0.6  # boxes narrower than this many pixels are not drawn (their share stays in the parent)


@dataclass
class Node:
    """One box: a function at a depth, with the summed value of every stack through it."""

    name: str
    value: float = 0.0
    stacks: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def _frame_name(fr: Frame) -> str:
    # Merge call sites of one function: offsets differ per call site, the function does not.
    return f"{fr.symbol} [{fr.module}]" if fr.module else fr.symbol


def build_tree(weighted: Iterable[tuple[Sequence[Frame], float]]) -> Node:
    """Merge (stack innermost-first, value) pairs into a tree rooted at "all"."""
    root = Node("all")
    for frames, value in weighted:
        if value <= 0:
            continue
        root.value += value
        root.stacks += 1
        node = root
        for fr in reversed(frames):
            name = _frame_name(fr)
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = Node(name)
            child.value += value
            child.stacks += 1
            node = child
    return root


def _color(name: str) -> str:
    # A stable warm colour per function, so one function looks the same in both graphs.
    h = hashlib.blake2s(name.encode("utf-8", "replace"), digest_size=2).digest()
    hue = 8 + h[0] % 42
    light = 58 + h[1] % 14
    return f"hsl({hue}, 85%, {light}%)"


def _depth(node: Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=0)


def icicle(root: Node, *, title: str, unit: str, graph_id: str) -> Markup:
    """The tree as an ``<svg class="flame">``; empty trees give a one-line note instead."""
    if root.value <= 0:
        return Markup('<p class="muted flame-empty">{}</p>').format(
            f"{title}: nothing to show (all values are zero)."
        )
    depth = _depth(root)
    height = depth * ROW + 4
    parts: list[str] = [
        f'<svg class="flame" id="{escape(graph_id)}" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="ui-monospace, monospace" font-size="11" '
        f'data-unit="{escape(unit)}" data-total="{root.value:.6g}">'
        f"<title>{escape(title)}</title>"
    ]
    total = root.value

    def draw(node: Node, x: float, level: int, parent_value: float) -> None:
        w = node.value / total * WIDTH
        if w < MIN_BOX:
            return
        share = node.value / total * 100
        of_parent = node.value / parent_value * 100 if parent_value > 0 else 100.0
        value_text = format_value(node.value, unit)
        tip = (
            f"{node.name}\n{value_text} ({share:.1f}% of all, {of_parent:.1f}% of caller), "
            f"{node.stacks} stack{'s' if node.stacks != 1 else ''}"
        )
        y = level * ROW
        # Every box gets a <text>, empty when too narrow, so that zooming in (report.js) can fill it.
        max_chars = int((w - 6) / 6.6)
        text = ""
        if max_chars >= 3:
            text = node.name if len(node.name) <= max_chars else node.name[: max_chars - 1] + "\u2026"
        label = f'<text x="{x + 3:.2f}" y="{y + 13}">{escape(text)}</text>'
        fill = "#9aa4b1" if level == 0 else _color(node.name)
        parts.append(
            f'<g class="fn" data-name="{escape(node.name)}" data-value="{escape(value_text)}" '
            f'data-share="{share:.1f}" data-stacks="{node.stacks}" data-x="{x / WIDTH:.6f}" '
            f'data-w="{w / WIDTH:.6f}" data-depth="{level}"><title>{escape(tip)}</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{max(w - 0.5, 0.1):.2f}" height="{ROW - 1}" rx="2" '
            f'fill="{fill}"/>{label}</g>'
        )
        cx = x
        for child in sorted(node.children.values(), key=lambda c: (-c.value, c.name)):
            draw(child, cx, level + 1, node.value)
            cx += child.value / total * WIDTH

    draw(root, 0.0, 0, root.value)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def outstanding_graph(findings: Sequence[Finding], graph_id: str = "flame-outstanding") -> Markup:
    """Icicle of the bytes each stack still held at its last snapshot."""
    root = build_tree((f.stack.frames, float(f.outstanding_bytes)) for f in findings)
    return icicle(root, title="Outstanding bytes by call stack", unit="bytes", graph_id=graph_id)


def growth_graph(findings: Sequence[Finding], graph_id: str = "flame-growth") -> Markup:
    """Icicle of the leak rate (bytes/s) of the stacks judged leaks.

    Only leaks: a plateau's whole-run slope (a cache that filled in one interval) says nothing about
    where memory keeps going, and would outweigh a slow real leak.
    """
    # NaN and negative slopes both count as zero (``x > 0`` is False for NaN).
    root = build_tree(
        (f.stack.frames, f.growth_bytes_per_sec if f.growth_bytes_per_sec > 0 else 0.0)
        for f in findings
        if f.verdict == "leak"
    )
    return icicle(root, title="Leak rate by call stack", unit="bytes/s", graph_id=graph_id)
