"""Pictures of a model: where its algorithm lives, and what a method found there.

``draw_model(model, task, finding=None) -> matplotlib Figure`` (``zoo show`` saves it as a PNG;
notebooks show it inline). The left panel draws the model as a grid, a row per site in layer
order and a column per position (headed by the position, an example input's token, and a mark
where the output is read out): the cells in the ground-truth circuit are shaded, and each row
names, in the variable's colour, the program variables that live there (their ground-truth
``Location``) and, in italics, those its component computes; a row that only carries variables
written below it (a residual stream) says how many. Decoys (variables computed and never read)
are drawn in grey where the ground truth has them. A finding, when given, gets a second panel on
the same grid with the circuit outlined: a ``SiteScores`` as a heatmap of |score| (log scale,
colour bar), an ``Alignment`` as the variables at the sites it chose (a check mark where that is
the ground-truth site, and the method's own score), a ``Circuit`` as the components it kept.

The drawing reads only :class:`Picture` (rows, position labels, and per-row, per-position label
matrices), which :func:`picture_of` builds from the ground truth: when the ground truth gives
components (heads, blocks of units) and per-(component, position) circuit membership, only
:func:`picture_of` changes, the rows becoming components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FONT = 10  # points, at the figure's 100 dpi
CIRCUIT_COLOUR, OUTSIDE_COLOUR, NEITHER_COLOUR, DECOY_COLOUR = "#fdd9b5", "#e6e6e6", "#ffffff", "#8c8c8c"
CELL_WIDTH, ROW_HEIGHT = 0.42, 0.34  # inches


@dataclass(frozen=True)
class Row:
    """One row of the picture: a component (a head, a block of units, a group of channels) or a
    site that is not split into components (a residual stream, an MLP's output)."""

    name: str
    layer: int
    kind: str
    width: int
    site: str  # the site it is, or whose coordinates it holds


@dataclass
class Picture:
    """What :func:`draw` draws, without matplotlib: rows, columns and what each cell holds.

    ``cells`` ``[rows, T]``: 1 in the ground-truth circuit, 0 outside it, -1 neither (an
    input-independent or idle cell, :attr:`zoo.ground_truth.GroundTruth.cells`). ``variables``,
    ``computes``, ``decoys``: name -> ``[rows, T]`` (bool) where the variable lives (a row holds
    it) / is computed / where a decoy lives. ``carried[i]``: the other variables readable at row i.
    """

    title: str
    rows: list[Row]
    positions: list[str]  # column labels: "t\ntoken"
    readout: np.ndarray  # [T] bool: the output is read at this position
    cells: np.ndarray
    variables: dict[str, np.ndarray]
    computes: dict[str, np.ndarray] = field(default_factory=dict)
    decoys: dict[str, np.ndarray] = field(default_factory=dict)
    carried: list[tuple[str, ...]] = field(default_factory=list)
    definitions: dict[str, str] = field(default_factory=dict)  # variable -> its line of the program

    @property
    def T(self) -> int:
        return len(self.positions)

    @property
    def circuit(self) -> np.ndarray:
        return self.cells == 1

    def row_index(self) -> dict[str, int]:
        return {r.name: i for i, r in enumerate(self.rows)}

    def rows_of(self, name: str) -> list[int]:
        """The rows that are ``name`` (a component or a site), or the components of site ``name``."""
        exact = [i for i, r in enumerate(self.rows) if r.name == name]
        return exact or [i for i, r in enumerate(self.rows) if r.site == name]


def example_tokens(task, length: int) -> np.ndarray:
    """A fixed example input of ``length`` tokens (the columns' headings)."""
    return np.asarray(task.sample(1, seed=0, length=length).tokens)[0]


def model_rows(model) -> list[Row]:
    """The model's components, each in place of the site it splits, and its other sites, in layer order."""
    comps: dict[str, list] = {}
    for c in getattr(model, "components", ()):
        comps.setdefault(c.site, []).append(c)
    rows = []
    for s in model.sites:
        if s.name in comps:
            rows += [Row(c.name, c.layer, c.kind, c.width, s.name) for c in comps[s.name]]
        else:
            rows.append(Row(s.name, s.layer, s.kind, s.width, s.name))
    return rows


def picture_of(model, task, title: str | None = None) -> Picture:
    """The model's rows (:func:`model_rows`) and the ground truth's labels per cell: a component's
    own cells where the ground truth resolves it in time, else its site's circuit membership."""
    truth = model.ground_truth
    if truth is None:
        raise ValueError(f"the {model.family} model for {task.name} has no ground truth (trained with --no-plant?): there is nothing to draw; use a compiled or planted model")
    rows = model_rows(model)
    T = int(getattr(model, "max_len", task.max_len))
    tokens = example_tokens(task, T)
    readout = np.asarray(task.readout_mask(tokens[None]))[0]
    positions = [f"{t}\n{task.vocab[int(tok)]}" for t, tok in enumerate(tokens)]
    own_cells = getattr(truth, "cells", None) or {}
    circuit_sites = set(truth.circuit)
    cells = np.zeros((len(rows), T), int)
    for i, r in enumerate(rows):
        if r.name in own_cells:
            lab = np.asarray(own_cells[r.name], int)[:T]
            cells[i, : len(lab)] = lab
        else:
            cells[i] = 1 if r.site in circuit_sites else 0
    decoy_names = set(getattr(truth, "decoys", ()) or ())
    held = getattr(truth, "component_variables", None) or {}
    homes: dict[str, np.ndarray] = {}
    for v, loc in truth.variables.items():
        m = np.zeros((len(rows), T), bool)
        for i, r in enumerate(rows):
            # a block of a site holds what the ground truth says it holds; a whole site, what lives there
            if (v in held.get(r.name, ())) if r.name != r.site else (loc.site == r.name):
                m[i, max(0, loc.lag):] = True  # the value at t lives at position t + lag
        homes[v] = m
    computes = {}
    for v, comps in truth.components.items():
        m = np.zeros((len(rows), T), bool)
        for c in comps:
            for i in (j for j in range(len(rows)) if rows[j].name == c):
                m[i] = True
        if m.any():
            computes[v] = m
    variables = {v: m for v, m in homes.items() if v not in decoy_names}
    decoys = {v: m for v, m in homes.items() if v in decoy_names}
    here = [{v for v, m in homes.items() if m[i].any()} | {v for v, m in computes.items() if m[i].any()} for i in range(len(rows))]
    carried = [tuple(v for v in truth.site_variables.get(r.name, ()) if v not in here[i] and v not in decoy_names) for i, r in enumerate(rows)]
    definitions = {name: task.program[name].describe() for name in task.program.names if name not in decoy_names}
    kind = model.meta.get("kind", "compiled") + (" (reparametrized)" if "reparametrized" in model.meta else "")
    return Picture(title or f"{task.name} / {model.family} / {kind}", rows, positions, readout, cells, variables, computes, decoys, carried, definitions)


# -- what a finding says, on the picture's grid --------------------------------------------------------
@dataclass
class Overlay:
    """A finding on the picture's grid: ``scores`` ``[rows, T]`` (SiteScores; NaN where the
    finding has none), ``placed`` variable -> ``[rows, T]`` (Alignment) with ``labels`` per
    variable (its score, a check mark at its ground-truth place), or ``kept`` ``[rows, T]``
    (Circuit)."""

    title: str
    kind: str
    scores: np.ndarray | None = None
    placed: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    kept: np.ndarray | None = None


def overlay_of(picture: Picture, finding) -> Overlay:
    n, T = len(picture.rows), picture.T
    name = finding.method or type(finding).__name__
    if finding.kind == "site_scores":
        scores = np.full((n, T), np.nan)
        for site, arr in finding.scores.items():
            a = np.abs(np.asarray(arr, float))[:T]
            for i in picture.rows_of(site):
                scores[i, : len(a)] = a
        for comp, v in finding.components.items():
            for i in picture.rows_of(comp):
                if np.isnan(scores[i]).all() or picture.rows[i].name == comp:
                    scores[i] = abs(v)
        return Overlay(f"{name}: |score| per row and position", "site_scores", scores=scores)
    if finding.kind == "alignment":
        placed, labels = {}, {}
        for var, av in finding.variables.items():
            m = np.zeros((n, T), bool)
            cols = list(range(T)) if av.positions == "all" else [p + av.lag for p in av.positions if 0 <= p + av.lag < T]
            for i in picture.rows_of(av.site):
                m[i, cols] = True
            placed[var] = m
            home = picture.variables.get(var, picture.decoys.get(var))
            right = home is not None and bool((home & m).any())
            labels[var] = var + (f" {av.score:.2f}" if av.score is not None and math.isfinite(av.score) else "") + (" \u2713" if right else "")
        return Overlay(f"{name}: where it puts each variable (\u2713 where the ground truth has it)", "alignment", placed=placed, labels=labels)
    kept = np.zeros((n, T), bool)
    for comp in finding.components:
        for i in picture.rows_of(comp):
            kept[i] = True
    return Overlay(f"{name}: the components it keeps", "circuit", kept=kept)


# -- drawing ---------------------------------------------------------------------------------------------
# dark, distinct colours that read on the light circuit shading (no yellow, orange or grey: grey is
# for decoys and carried variables, orange for the circuit)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#c2189b", "#0f8b99", "#6b6b00", "#1b9e77", "#7570b3", "#e7298a",
           "#4d8a12", "#a6761d", "#000080", "#800000", "#006400", "#4b0082", "#2f4f4f", "#8b008b", "#556b2f", "#b22222", "#4682b4")


def colours(names) -> dict[str, str]:
    """A colour per variable, in program order (the palette repeats past 22 variables)."""
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(names)}


def _grid(ax, picture: Picture, labels: np.ndarray) -> None:
    """Cells coloured by label: 1 circuit, 0 outside, -1 neither."""
    from matplotlib.colors import ListedColormap

    ax.imshow(labels.astype(float), aspect="auto", cmap=ListedColormap([NEITHER_COLOUR, OUTSIDE_COLOUR, CIRCUIT_COLOUR]), vmin=-1.5, vmax=1.5, interpolation="nearest")
    _frame(ax, picture)


def _frame(ax, picture: Picture) -> None:
    n, T = len(picture.rows), picture.T
    ax.set_xticks(range(T))
    ax.set_xticklabels(picture.positions, fontsize=FONT - 2)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{r.name}  ({r.width})" for r in picture.rows], fontsize=FONT - 1)
    ax.set_xticks(np.arange(-0.5, T, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.2)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(axis="x", top=True, labeltop=True, bottom=False, labelbottom=False)
    for i in range(1, n):  # a line between layers
        if picture.rows[i].layer != picture.rows[i - 1].layer:
            ax.axhline(i - 0.5, color="#555555", linewidth=1.2)
    for t in np.flatnonzero(picture.readout):
        ax.annotate("\u25bc", (t, -0.5), xycoords="data", ha="center", va="bottom", fontsize=FONT - 3, color="#d95f02", annotation_clip=False)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(n - 0.5, -0.5)


def _row_text(ax, picture: Picture, per_row: list[list[tuple[str, str, str]]]) -> None:
    """Write, centred in each row, the (text, colour, style) pieces of ``per_row[i]``."""
    from matplotlib.offsetbox import AnnotationBbox, HPacker, TextArea

    T = picture.T
    for i, pieces in enumerate(per_row):
        if not pieces:
            continue
        areas = [TextArea(text, textprops=dict(color=colour, fontsize=FONT - 1, fontweight="bold" if style == "bold" else "normal",
                                                 fontstyle="italic" if style == "italic" else "normal")) for text, colour, style in pieces]
        box = HPacker(children=areas, align="center", pad=0, sep=6)
        ab = AnnotationBbox(box, ((T - 1) / 2, i), xycoords="data", frameon=False, box_alignment=(0.5, 0.5))
        ax.add_artist(ab)


def _truth_pieces(picture: Picture, colour: dict) -> list[list[tuple[str, str, str]]]:
    out = []
    for i in range(len(picture.rows)):
        lives = {v for v, m in {**picture.variables, **picture.decoys}.items() if m[i].any()}
        pieces = [(v, colour[v], "bold") for v in picture.variables if v in lives]
        pieces += [(f"decoy {v}", DECOY_COLOUR, "italic") for v in picture.decoys if v in lives]
        for v, m in picture.computes.items():
            if m[i].any() and v not in lives:
                pieces.append((f"\u2192{'decoy ' if v in picture.decoys else ''}{v}", DECOY_COLOUR if v in picture.decoys else colour.get(v, "#333333"), "italic"))
        if picture.carried and picture.carried[i]:
            pieces.append((f"+{len(picture.carried[i])} carried", "#777777", "normal"))
        out.append(_fit(pieces, picture.T))
    return out


def _fit(pieces, T: int):
    """The pieces, with the decoys counted instead of named when a row cannot hold them all."""
    room = T * CELL_WIDTH * 72 / ((FONT - 1) * 0.62)  # characters that fit across the row
    if sum(len(text) + 2 for text, _, _ in pieces) <= room:
        return pieces
    decoys = [p for p in pieces if p[1] == DECOY_COLOUR]
    kept = [p for p in pieces if p[1] != DECOY_COLOUR]
    return kept + ([(f"+{len(decoys)} decoys", DECOY_COLOUR, "italic")] if decoys else [])


def _outline_circuit(ax, picture: Picture) -> None:
    """A box around each run of circuit cells in a row (above the grid lines)."""
    from matplotlib.patches import Rectangle

    for i, row in enumerate(picture.circuit):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):
            ax.add_patch(Rectangle((start - 0.45, i - 0.42), stop - start - 0.1, 0.84, fill=False, edgecolor="#d95f02", linewidth=2.0, zorder=4))


def draw(picture: Picture, overlay: Overlay | None = None):
    """The figure for ``picture`` (and ``overlay``, in a second panel on the same grid)."""
    from matplotlib.colors import ListedColormap, LogNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n, T = len(picture.rows), picture.T
    colour = colours(list(picture.definitions) + [v for v in picture.variables if v not in picture.definitions])
    panels = 1 if overlay is None else 2
    grid_w = max(4.0, CELL_WIDTH * T)
    legend_lines = len(picture.definitions) + 4
    height = 1.4 + ROW_HEIGHT * n + 0.19 * legend_lines
    fig = Figure(figsize=(2.6 + (grid_w + 0.9) * panels, height), dpi=100)  # no pyplot: no backend to pick, nothing left open
    top = 1 - 0.9 / height
    bottom = (0.45 + 0.19 * legend_lines) / height
    axes = []
    for k in range(panels):
        left = (2.2 + k * (grid_w + 0.9)) / fig.get_figwidth()
        axes.append(fig.add_axes([left, bottom, grid_w / fig.get_figwidth(), top - bottom]))
    ax = axes[0]
    _grid(ax, picture, picture.cells)
    _row_text(ax, picture, _truth_pieces(picture, colour))
    ax.set_title("ground truth: variables where they live, \u2192 computed by, circuit shaded", fontsize=FONT, pad=34)
    if overlay is not None:
        ax2 = axes[1]
        if overlay.kind == "site_scores":
            s = overlay.scores
            topv = np.nanmax(s) if np.isfinite(s).any() else 0.0
            if topv > 0:
                shown = np.where(np.isfinite(s) & (s > 0), s, topv * 1e-3)
                im = ax2.imshow(shown, aspect="auto", cmap="viridis", norm=LogNorm(vmin=topv * 1e-3, vmax=topv, clip=True), interpolation="nearest")
                bar = fig.colorbar(im, ax=ax2, fraction=0.05, pad=0.02)
                bar.set_label("|score| (log scale)", fontsize=FONT - 1)
                bar.ax.tick_params(labelsize=FONT - 2)
            else:
                ax2.imshow(np.zeros((n, T)), aspect="auto", cmap="viridis", vmin=0, vmax=1)
            _frame(ax2, picture)
        elif overlay.kind == "alignment":
            _grid(ax2, picture, np.zeros((n, T), int))
            per_row = [[(overlay.labels[v], colour.get(v, "#333333"), "bold") for v, m in overlay.placed.items() if m[i].any()] for i in range(n)]
            _row_text(ax2, picture, per_row)
        else:
            ax2.imshow(overlay.kept.astype(float), aspect="auto", cmap=ListedColormap([OUTSIDE_COLOUR, "#8fb8de"]), vmin=0, vmax=1, interpolation="nearest")
            _frame(ax2, picture)
        _outline_circuit(ax2, picture)
        ax2.set_yticklabels([])
        ax2.set_title(overlay.title + "\n(ground-truth circuit outlined)", fontsize=FONT, pad=34)
    fig.suptitle(picture.title, fontsize=FONT + 3, x=0.02, ha="left", y=1 - 0.12 / height, va="top")
    handles = [Patch(facecolor=CIRCUIT_COLOUR, label="ground-truth circuit"), Patch(facecolor=OUTSIDE_COLOUR, label="outside it")]
    if (picture.cells == -1).any():
        handles.append(Patch(facecolor=NEITHER_COLOUR, edgecolor="#bbbbbb", label="neither (input-independent or idle)"))
    if overlay is not None:
        handles.append(Patch(facecolor="none", edgecolor="#d95f02", linewidth=2, label="ground-truth circuit (outline)"))
        if overlay.kind == "circuit":
            handles.append(Patch(facecolor="#8fb8de", label="kept by the method"))
    fig.legend(handles=handles, loc="upper left", fontsize=FONT - 1, frameon=False, ncol=len(handles),
               bbox_to_anchor=(2.1 / fig.get_figwidth(), bottom - 0.12 / height))
    lines = [(f"{v} = {d}", colour[v]) for v, d in picture.definitions.items()]
    lines += [("\u25bc output read here;  (N) after a site: its width;  +k carried: variables written below, readable here", "#333333")]
    y = (0.3 + 0.19 * (len(lines) - 1)) / height
    for text, c in lines:
        fig.text(2.2 / fig.get_figwidth(), y, text, fontsize=FONT - 1, color=c, family="monospace", va="bottom")
        y -= 0.19 / height
    return fig


def draw_model(model, task, finding=None, title: str | None = None):
    """``matplotlib`` Figure of ``model``'s ground truth for ``task``, with ``finding`` beside it."""
    picture = picture_of(model, task, title)
    return draw(picture, overlay_of(picture, finding) if finding is not None else None)
