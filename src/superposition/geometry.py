"""Geometry of an embedding W: norms, superposition, feature dimensionality, neurons and shapes.

Every function takes W stored ``[inst, feat, hidden]`` (row ``W[k, i]`` is feature i's direction in
instance k, the paper's column W_i) and is batched over ``inst``. Pure functions: no I/O, no state.

A feature whose norm is below ``eps`` is *not represented*: its superposition and its dimensionality
are 0, never NaN. The shape classifier (:func:`classify`) uses its own, larger ``norm_threshold``.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from superposition import _html
from superposition._types import Float, Int, Tensor
from superposition.errors import ConfigError
from superposition.results import Run

EPS = 1e-8
"""Norm below which a feature (or a neuron's weight vector) counts as zero."""


# --------------------------------------------------------------------------------------------------
# Section 2, "Demonstrating Superposition": norms, W^T W and superposition


def gram(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat feat"]:
    """The feature Gram matrix, ``G[k, i, j] = W_i . W_j`` (the paper's ``W^T W``)."""
    return W @ W.transpose(-1, -2)


def feature_norms(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, "inst feat"]:
    """``||W_i||``: about 1 when feature i is represented, about 0 when it is not (Section 2)."""
    return torch.linalg.vector_norm(W, dim=-1)


def _overlaps(W: Float[Tensor, "inst feat hidden"], eps: float) -> Float[Tensor, "inst feat feat"]:
    """``P[k, i, j] = (W_i_hat . W_j)^2 = (W_i . W_j)^2 / ||W_i||^2``; zero features' rows are 0."""
    if not eps > 0:
        raise ConfigError(f"eps must be > 0, got {eps!r}")
    G = gram(W)
    sq = torch.diagonal(G, dim1=-2, dim2=-1)
    live = sq > eps**2
    safe = torch.where(live, sq, torch.ones_like(sq))  # no 0/0, not even in the backward pass
    return torch.where(live[..., None], G**2 / safe[..., None], torch.zeros_like(G))


def superposition(
    W: Float[Tensor, "inst feat hidden"], eps: float = EPS
) -> Float[Tensor, "inst feat"]:
    """``sum_{j != i} (W_i_hat . W_j)^2`` (Section 2); 0 when orthogonal to the rest."""
    P = _overlaps(W, eps)
    off = 1.0 - torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    return (P * off).sum(-1)


def feature_dimensionality(
    W: Float[Tensor, "inst feat hidden"], eps: float = EPS
) -> Float[Tensor, "inst feat"]:
    """``D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2`` (Section 4, "Feature Dimensionality").

    The fraction of a dimension feature i gets: 1 for a dedicated dimension, ``m/k`` for each of k
    equal-norm vectors forming a tight frame of m dimensions (antipodal pair 1/2, triangle 2/3,
    pentagon 2/5, tetrahedron 3/4, square antiprism 3/8), 0 when not represented.
    ``sum_i D_i <= m``.
    Invariant under rotations of the hidden space and under scaling W.
    """
    P = _overlaps(W, eps)
    sq = torch.diagonal(P, dim1=-2, dim2=-1)  # (W_i_hat . W_i)^2 = ||W_i||^2, or 0 when not live
    total = P.sum(-1)  # >= sq, and > 0 exactly where the feature is live
    live = total > 0
    return torch.where(live, sq / torch.where(live, total, torch.ones_like(total)), total)


def dimensions_per_feature(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, " inst"]:
    """``m / ||W||_F^2`` (Section 4): 1 when m features are each given a dimension, 1/2 for pairs.

    An all-zero W gives ``inf``.
    """
    return W.shape[-1] / W.pow(2).sum(dim=(-2, -1))


# --------------------------------------------------------------------------------------------------
# Section 7, "Privileged Basis": hidden units are neurons, and W[k, i, n] is feature i's weight on n


def neuron_feature_weights(
    W: Float[Tensor, "inst feat hidden"],
) -> Float[Tensor, "inst hidden feat"]:
    """Each neuron's weight per feature, ``out[k, n, i] = W[k, i, n]`` (a view, not a copy)."""
    return W.transpose(-1, -2)


def neuron_monosemanticity(
    W: Float[Tensor, "inst feat hidden"], eps: float = EPS
) -> Float[Tensor, "inst hidden"]:
    """The share of neuron n's squared weight its largest feature holds (Section 7).

    ``max_i W_in^2 / sum_i W_in^2``: 1 for a monosemantic neuron, 1/k when k features share it
    equally, 0 for a dead neuron.
    """
    sq = W.pow(2)
    total, top = sq.sum(-2), sq.amax(-2)
    live = total > eps**2
    return torch.where(
        live, top / torch.where(live, total, torch.ones_like(total)), torch.zeros_like(total)
    )


def neuron_responses(
    W: Float[Tensor, "inst feat hidden"],
    b_hidden: Float[Tensor, "inst hidden"] | None = None,
    value: float = 1.0,
) -> Float[Tensor, "inst feat hidden"]:
    """Each ReLU neuron's activation when feature i alone is present at ``value``:
    ``ReLU(value W[k, i, n] + b_hidden[k, n])`` (Jermyn et al. 2022 probe neurons with one-feature
    inputs). A negative neuron bias silences the features whose weights it exceeds, so a neuron
    with several positive weights can still answer one feature only.

    Pass the result to :func:`neuron_monosemanticity` for each neuron's top feature's share of its
    squared responses.
    """
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"value must be a finite number > 0, got {value!r}")
    pre = value * W
    if b_hidden is not None:
        if tuple(b_hidden.shape) != (W.shape[0], W.shape[2]):
            raise ConfigError(
                f"b_hidden must have shape [inst, hidden] = {[W.shape[0], W.shape[2]]}, "
                f"got {list(b_hidden.shape)}"
            )
        pre = pre + b_hidden[:, None, :]
    return torch.relu(pre)


def monosemantic_neurons(
    W: Float[Tensor, "inst feat hidden"], threshold: float = 0.9, eps: float = EPS
) -> Int[Tensor, " inst"]:
    """How many neurons have :func:`neuron_monosemanticity` ``>= threshold`` (Section 7)."""
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold!r}")
    return (neuron_monosemanticity(W, eps) >= threshold).sum(-1)


def neuron_order(
    W: Float[Tensor, "inst feat hidden"], eps: float = EPS
) -> Int[Tensor, "inst hidden"]:
    """A neuron order for stacked per-neuron bar charts (Section 7).

    Neurons sorted by their dominant feature (lowest index, i.e. most important, first), then by
    monosemanticity (most monosemantic first); dead neurons last. Use it to index the ``hidden``
    axis of :func:`neuron_feature_weights`.
    """
    share = neuron_monosemanticity(W, eps)
    dominant = W.pow(2).argmax(-2).to(share.dtype)
    key = torch.where(share > 0, dominant + 0.5 * (1 - share), torch.full_like(share, W.shape[-2]))
    return torch.argsort(key, dim=-1, stable=True)


# --------------------------------------------------------------------------------------------------
# Section 4, "The Geometry of Superposition": naming the arrangement the represented features form

_SHAPES = {
    (2, 1): "antipodal pair",  # the digon
    (3, 2): "triangle",
    (4, 2): "square",
    (5, 2): "pentagon",
    (6, 2): "hexagon",
    (7, 2): "heptagon",
    (8, 2): "octagon",
    (4, 3): "tetrahedron",
    (6, 3): "octahedron",
    (8, 3): "square antiprism",
}
_PLURALS = {
    "dedicated dimension": "dedicated dimensions",
    "antipodal pair": "antipodal pairs",
    "tetrahedron": "tetrahedra",
    "octahedron": "octahedra",
    "square antiprism": "square antiprisms",
}


@dataclass(frozen=True)
class Component:
    """Represented features that interfere with one another (a connected component of the links)."""

    features: tuple[int, ...]
    """Feature indices, ascending."""
    rank: int
    """Dimension of the span of their directions."""
    name: str
    """e.g. "dedicated dimension", "antipodal pair", "pentagon", "5 features in 2 dimensions"."""
    regular: bool
    """Whether the directions form the regular shape (see :func:`classify`)."""


@dataclass(frozen=True)
class Geometry:
    """The arrangement of one instance's features."""

    label: str
    """Summary, e.g. "pentagon", "2 antipodal pairs + 1 not represented"."""
    components: tuple[Component, ...]
    """Components ordered by their first feature."""
    not_represented: tuple[int, ...]
    """Features whose norm is below the classifier's ``norm_threshold``."""


def _is_regular(U: Tensor, rank: int, dim_tol: float, angle_tol: float) -> bool:
    """Whether unit directions ``U`` (k x hidden) of the given rank form a regular shape."""
    k = U.shape[0]
    if k == 1:
        return True
    if rank == 1:  # the only regular rank-1 shape: two opposite directions
        return k == 2 and float(U[0] @ U[1]) < 0
    if rank == 2:  # regular polygon: the angles in the plane are evenly spaced
        plane = torch.linalg.svd(U, full_matrices=False).Vh[:2]
        xy = U @ plane.T
        angles = torch.sort(torch.atan2(xy[:, 1], xy[:, 0])).values
        gaps = torch.diff(angles, append=angles[:1] + 2 * math.pi)
        return float((gaps - 2 * math.pi / k).abs().max()) <= angle_tol
    # higher rank: an equal-norm tight frame (every D_i = r/k, Section 4) whose vectors sum to ~0
    dims = 1.0 / (U @ U.T).pow(2).sum(-1)
    centred = float(torch.linalg.vector_norm(U.mean(0))) <= dim_tol
    return centred and float((dims - rank / k).abs().max()) <= dim_tol


def _name(k: int, rank: int, regular: bool) -> str:
    if k == 1:
        return "dedicated dimension"
    if regular and (k, rank) in _SHAPES:
        return _SHAPES[(k, rank)]
    if regular and rank == 2:
        return f"{k}-gon"
    return f"{k} features in {rank} dimension{'s' if rank > 1 else ''}"


def _plural(name: str, count: int) -> str:
    if count == 1:
        # "5 features in 2 dimensions" already counts itself; "1 5 features in ..." reads wrong
        return name if name[0].isdigit() else f"1 {name}"
    if name in _PLURALS:
        return f"{count} {_PLURALS[name]}"
    if " features in " in name:
        return f"{count} sets of {name}"
    return f"{count} {name}s"


def _label(components: list[Component], not_represented: int) -> str:
    counts: dict[str, int] = {}
    for c in components:
        counts[c.name] = counts.get(c.name, 0) + 1
    parts = [_plural(name, n) for name, n in counts.items()]
    if not_represented:
        parts.append(f"{not_represented} not represented")
    if len(parts) == 1 and len(components) == 1:
        return components[0].name  # a lone shape: "pentagon"
    return " + ".join(parts)


def _classify_one(
    W: Tensor,
    norm_threshold: float,
    link_tol: float,
    rank_tol: float,
    dim_tol: float,
    angle_tol: float,
) -> Geometry:
    W = W.detach().to("cpu", torch.float64)
    norms = torch.linalg.vector_norm(W, dim=-1)
    live = [i for i in range(W.shape[0]) if float(norms[i]) >= norm_threshold]
    dead = tuple(i for i in range(W.shape[0]) if float(norms[i]) < norm_threshold)
    U = W[live] / norms[live, None]
    linked = ((U @ U.T).abs() > link_tol).tolist()
    seen: set[int] = set()
    components: list[Component] = []
    for start in range(len(live)):  # connected components by depth-first search
        if start in seen:
            continue
        stack, members = [start], []
        seen.add(start)
        while stack:
            a = stack.pop()
            members.append(a)
            for b in range(len(live)):
                if linked[a][b] and b not in seen:
                    seen.add(b)
                    stack.append(b)
        members.sort()
        Uc = U[members]
        s = torch.linalg.svdvals(Uc)
        rank = int((s > rank_tol * s[0]).sum())
        regular = _is_regular(Uc, rank, dim_tol, angle_tol)
        features = tuple(live[a] for a in members)
        components.append(Component(features, rank, _name(len(members), rank, regular), regular))
    return Geometry(_label(components, len(dead)), tuple(components), dead)


def classify(
    W: Float[Tensor, "inst feat hidden"],
    norm_threshold: float = 0.5,
    *,
    link_tol: float = 0.2,
    rank_tol: float = 0.2,
    dim_tol: float = 0.05,
    angle_tol: float = 0.15,
) -> list[Geometry]:
    """Name the arrangement of each instance's features (one :class:`Geometry` per instance).

    Rules, on the unit directions of the features:

    1. A feature with ``||W_i|| < norm_threshold`` is *not represented*.
    2. Two represented features are linked when ``|cos(W_i, W_j)| > link_tol``; the connected
       components are the shapes. Orthogonal shapes never interact, so a square (two orthogonal
       antipodal pairs) and an octahedron are reported as 2 and 3 antipodal pairs, as in the paper.
    3. A component's rank counts the singular values of its directions above ``rank_tol`` times the
       largest.
    4. It is regular when: rank 1, two opposite directions; rank 2, its angles in the plane are
       spaced ``2 pi / k`` apart to within ``angle_tol`` radians; rank >= 3, every direction's
       dimensionality is ``r/k`` to within ``dim_tol`` and the directions' mean has norm
       ``<= dim_tol``. Norms may differ: the shape is about directions.
    5. Names: one feature "dedicated dimension"; regular (2, 1) "antipodal pair", (k, 2) triangle,
       square, pentagon, ..., "k-gon", (4, 3) "tetrahedron", (6, 3) "octahedron", (8, 3) "square
       antiprism"; anything else (deformed or unnamed) "k features in r dimensions". The label
       counts the names in order of first feature, e.g. "2 antipodal pairs + 1 not represented";
       a lone shape is just its name, e.g. "pentagon".
    """
    for name, value in [
        ("norm_threshold", norm_threshold),
        ("link_tol", link_tol),
        ("rank_tol", rank_tol),
        ("dim_tol", dim_tol),
        ("angle_tol", angle_tol),
    ]:
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return [_classify_one(w, norm_threshold, link_tol, rank_tol, dim_tol, angle_tol) for w in W]


class Summary(dict[str, list]):
    """What :func:`summary` returns: a plain dict of lists (JSON-ready, compares equal to a dict)
    that also shows itself in Jupyter as a table per instance and its feature norms as bars
    coloured by superposition (the paper's Section 2 figure)."""

    MAX_INSTANCES = 4
    """Instances the notebook view shows at most."""
    MAX_FEATURES = 16
    """Feature rows per instance's table."""
    MAX_BARS = 64
    """Feature bars per instance's figure."""
    instances: list[int]
    """The run's index of each row (what the view calls "instance k"); not part of the dict."""

    def _repr_html_(self) -> str:
        norms, sup = self["feature_norms"], self["superposition"]
        dims, dpf, labels = (
            self["feature_dimensionality"],
            self["dimensions_per_feature"],
            self["geometry"],
        )
        blocks = []
        names = getattr(self, "instances", None) or list(range(len(labels)))
        for k in range(min(len(labels), self.MAX_INSTANCES)):
            n = len(norms[k])
            rows = [[i, norms[k][i], sup[k][i], dims[k][i]] for i in range(n)][: self.MAX_FEATURES]
            table = _html.table(
                ["feature", "norm", "superposition", "dimensionality"],
                rows,
                more=n - len(rows),
                what="features",
            )
            b = min(n, self.MAX_BARS)
            figure = _html.bars(
                np.asarray(norms[k][:b], dtype=float),
                np.asarray(sup[k][:b], dtype=float),
                title=f"instance {names[k]}: feature norms coloured by superposition",
                heading_text="||W_i||, colour: superposition",
            )
            head = (
                f"instance {names[k]}: {labels[k]}, dimensions per feature "
                f"{_html.number(dpf[k], 3)}"
            )
            blocks.append(_html.heading(head) + _html.side_by_side(table, figure))
        rest = len(labels) - len(blocks)
        tail = _html.note(f"… {rest} more instances") if rest > 0 else ""
        key = _html.note("superposition: 0 black (orthogonal to the rest) to 1 and more yellow")
        return "".join(blocks) + tail + key


def summary(
    W: Float[Tensor, "inst feat hidden"] | Run,
    norm_threshold: float = 0.5,
    *,
    instances: Sequence[int] | None = None,
) -> Summary:
    """Per-instance measures as plain lists, ready for JSON (``inf`` becomes ``None``): a
    :class:`Summary`, which is a dict.

    ``W`` may be a :class:`~superposition.results.Run` (or ``run.select(...)`` of one): the view
    then names each row by the run's instance index. ``instances`` names the rows of a bare
    ``W`` the same way, e.g. ``summary(run.W[best], instances=best)``; by default they are
    numbered from 0.
    """
    if isinstance(W, Run):
        if instances is None:
            instances = W.info.get("selected_instances", range(W.n_instances))
        W = W.W
    W = W.detach()
    if instances is not None and len(instances) != W.shape[0]:
        raise ConfigError(f"instances names {len(instances)} rows but W has {W.shape[0]} instances")
    dpf = dimensions_per_feature(W).tolist()
    out = Summary(
        feature_norms=feature_norms(W).tolist(),
        feature_dimensionality=feature_dimensionality(W).tolist(),
        superposition=superposition(W).tolist(),
        dimensions_per_feature=[v if math.isfinite(v) else None for v in dpf],
        geometry=[g.label for g in classify(W, norm_threshold)],
    )
    out.instances = list(range(W.shape[0])) if instances is None else [int(i) for i in instances]
    return out
