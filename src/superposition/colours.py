"""The colour conventions shared by every figure: static (matplotlib), interactive (plotly, in
the report and the explorer) and the notebook views.

Signed values (``W^T W``, biases, weights) are drawn on one diverging scale: blue negative,
white 0, red positive, as in the paper's figures (Elhage et al. 2022, Section 2). The stops are
ColorBrewer's 7-class RdBu, ordered from negative to positive, so nothing depends on whether a
library's own "RdBu" runs from red to blue (matplotlib, plotly.py) or from blue to red
(plotly.js).
"""

DIVERGING: tuple[str, ...] = (
    "#2166ac",
    "#67a9cf",
    "#d1e5f0",
    "#f7f7f7",
    "#fddbc7",
    "#ef8a62",
    "#b2182b",
)
"""The diverging scale's colours, evenly spaced from the most negative value (blue) through 0
(white) to the most positive (red). Draw it symmetric about 0 (``vmin = -vmax``)."""

DIVERGING_SCALE: list[tuple[float, str]] = [
    (i / (len(DIVERGING) - 1), colour) for i, colour in enumerate(DIVERGING)
]
""":data:`DIVERGING` as a plotly colour scale (``colorscale=``), 0 = most negative, 1 = most
positive; the same list goes to plotly.js as JSON. Never combine it with ``reversescale``."""
