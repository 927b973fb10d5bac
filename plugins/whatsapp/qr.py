"""QR codes as images: the raw string a bridge gives, as SVG and PNG data URLs
(rendered with segno)."""

from __future__ import annotations

import segno


def render(code: str) -> tuple[str, str]:
    """``(svg, png)`` data URLs of the QR code of ``code``."""
    qr = segno.make(code, error="m", micro=False)
    svg: str = qr.svg_data_uri(scale=4, border=2)
    png: str = qr.png_data_uri(scale=6, border=2)
    return svg, png
