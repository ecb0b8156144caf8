"""The lineage graph: dataset versions (and their parents) → the model versions trained on them → the aliases
that serve them, drawn as inline SVG from ``Project.status()``; and the deployment history behind the aliases.

Three columns, each in version order: a dataset's edge to its parents (clean, feedback merge) stays in the
first column, a model's edge goes to the dataset version it was trained on (and to its parent version for
an optimized variant), an alias's edge to the version it points at now. Every node links to its row on
the Data or Models page; every label is escaped.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from ..project import Project
from .charts import PALETTE, svg_text

__all__ = ["deployment_history", "lineage_svg"]

ROW_H, NODE_H = 30, 22
COLS = (10, 290, 560)                 # x of the datasets', models' and aliases' columns
NODE_W = (230, 220, 120)


def _node(x: float, y: float, w: float, label: str, sub: str, href: str, colour: str, node_id: str) -> str:
    return (f'<a href="{escape(href)}"><g id="{escape(node_id)}"><rect x="{x}" y="{y}" width="{w}" height="{NODE_H}" '
            f'rx="4" fill="#fff" stroke="{colour}" stroke-width="1.5"/>'
            + svg_text(x + 6, y + 15, label, extra=' font-weight="bold"')
            + svg_text(x + w - 6, y + 15, sub, "end") + f"<title>{escape(label)} {escape(sub)}</title></g></a>")


def _edge(x1: float, y1: float, x2: float, y2: float, colour: str = "#8c95a6", dashed: bool = False) -> str:
    mid = (x1 + x2) / 2
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return (f'<path d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" fill="none" '
            f'stroke="{colour}" stroke-width="1.2"{dash}/>')


def lineage_svg(status: dict[str, Any], base: str, titles: tuple[str, str, str]) -> Markup:
    """The graph of ``status`` (``Project.status()``); links written under ``base`` (the mount point),
    the columns headed by ``titles``."""
    datasets, models = status["datasets"], status["models"]
    ds_y = {d["id"]: 30 + ROW_H * i for i, d in enumerate(datasets)}
    m_y = {m["version"]: 30 + ROW_H * i for i, m in enumerate(models)}
    aliases: dict[str, int] = {a: m["version"] for m in models for a in m["aliases"]}
    height = 40 + ROW_H * max(len(datasets), len(models), len(aliases), 1)
    width = COLS[2] + NODE_W[2] + 10
    edges, nodes = [], []
    for col, title in zip(COLS, titles, strict=True):
        nodes.append(svg_text(col, 14, title, extra=' font-weight="bold"'))
    for d in datasets:
        y = ds_y[d["id"]]
        nodes.append(_node(COLS[0], y, NODE_W[0], f"v{d['version']} {d['step']}", f"{d['rows']} rows",
                           f"{base}/data#dataset-{d['id']}", PALETTE[0], f"lineage-dataset-{d['id']}"))
        for p in d["parents"]:
            if p in ds_y:                    # parent above: an arc on the column's left side
                py = ds_y[p]
                edges.append(f'<path d="M{COLS[0]},{py + NODE_H / 2} C{COLS[0] - 12},{py + NODE_H / 2} '
                             f'{COLS[0] - 12},{y + NODE_H / 2} {COLS[0]},{y + NODE_H / 2}" fill="none" '
                             f'stroke="{PALETTE[0]}" stroke-width="1.2"/>')
    for m in models:
        y = m_y[m["version"]]
        colour = PALETTE[2] if m["production"] else PALETTE[5]
        label = f"{m['name']}:{m['version']}" + (f" {m['variant']}" if m.get("variant") else "")
        nodes.append(_node(COLS[1], y, NODE_W[1], label, m.get("family") or "", f"{base}/models#model-{m['version']}",
                           colour, f"lineage-model-{m['version']}"))
        if m["dataset"] in ds_y:
            edges.append(_edge(COLS[0] + NODE_W[0], ds_y[m["dataset"]] + NODE_H / 2, COLS[1], y + NODE_H / 2))
        if m.get("parent_version") in m_y:
            py = m_y[m["parent_version"]]
            edges.append(_edge(COLS[1] + NODE_W[1], py + NODE_H / 2, COLS[1] + NODE_W[1], y + NODE_H / 2,
                               dashed=True))
    for i, (alias, version) in enumerate(sorted(aliases.items())):
        y = 30 + ROW_H * i
        colour = PALETTE[2] if alias == "production" else PALETTE[4]
        nodes.append(_node(COLS[2], y, NODE_W[2], alias, f"v{version}", f"{base}/models#model-{version}", colour,
                           f"lineage-alias-{alias}"))
        edges.append(_edge(COLS[1] + NODE_W[1], m_y[version] + NODE_H / 2, COLS[2], y + NODE_H / 2, colour))
    return Markup(f'<svg class="chart lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
                  f'role="img" aria-label="lineage" xmlns="http://www.w3.org/2000/svg">'
                  + "".join(edges) + "".join(nodes) + "</svg>")


def deployment_history(project: Project, aliases: list[str]) -> list[dict[str, Any]]:
    """Every move of the given aliases (promote, rollback, retrain), newest first."""
    cat, name = project.workspace.catalog, project.config.name
    moves = [{**d, "at": d["at"].isoformat(timespec="seconds")} for a in aliases for d in cat.alias_history(name, a)]
    return sorted(moves, key=lambda d: d["id"], reverse=True)
