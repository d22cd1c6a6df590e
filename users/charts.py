"""Small charts for the admin, drawn as inline SVG: no script, no CDN, nothing to load.

`lines` draws a few series over the same x labels, each in its own colour with a legend,
scaled to the largest value; the numbers stay in the SVG's <title>s for a hover.
"""

from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 28, 30
# Colour-blind-safe and readable on the admin's white and dark themes (Okabe-Ito).
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9"]


@dataclass(frozen=True)
class Series:
    name: str
    values: list[int]


def lines(title: str, labels: list[str], series: list[Series]) -> SafeString:
    """An SVG line chart of `series` over `labels` (the x axis, every few shown)."""
    top = max([1, *(value for s in series for value in s.values)])
    steps = max(len(labels) - 1, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + plot_w * i / steps

    def y(value: int) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-label="{escape(title)}" '
        'style="max-width:720px;font:12px sans-serif">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'stroke="currentColor" stroke-opacity=".4"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" fill="currentColor">{top}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" fill="currentColor">0</text>',
    ]
    every = max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - 10}" text-anchor="middle" '
                f'fill="currentColor">{escape(label)}</text>'
            )
    for n, one in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(one.values))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{points}">'
            f"<title>{escape(one.name)}: {', '.join(map(str, one.values))}</title></polyline>"
        )
        legend_x = LEFT + n * 130
        parts.append(
            f'<rect x="{legend_x}" y="6" width="14" height="4" fill="{colour}"/>'
            f'<text x="{legend_x + 20}" y="12" fill="currentColor">{escape(one.name)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every text in it is escaped above)
