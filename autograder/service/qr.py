"""The certificate page's QR code, as SVG: it holds the certificate's short public address only
(a short URL makes a sparse code that any phone reads), drawn with reportlab's QR encoder."""
from __future__ import annotations

from reportlab.graphics import renderSVG
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing


def qr_svg(value: str, size: float = 180) -> bytes:
    widget = QrCodeWidget(value, barLevel="M")
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
    drawing.add(widget)
    return renderSVG.drawToString(drawing).encode("utf-8")
