"""Figures inside HTML reports: each chart inline as a ``data:`` URI, so a report is one file
that opens from MLflow's artifact view or a mail attachment, with nothing to fetch."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def png_data_uri(fig: Figure, dpi: int = 80) -> str:
    """The figure as a PNG ``data:`` URI for an ``<img src=...>``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
