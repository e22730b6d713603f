"""The printable certificate: one landscape A4 page drawn with reportlab.

It shows the name, the course and achievement, the date, the issuer, the credential id and a QR
code of the credential's short public URL (``links.short_url``: ``<service>/c/<short_id>``), where
the course service shows the credential and verifies it. The PDF itself is *not* the proof:
anyone can draw a PDF. The signed ``credential.json`` is what verifies.

Fonts: the name may use any script, so it is drawn with DejaVu Sans when the system has it and
reportlab's bundled Bitstream Vera otherwise; fixed English text uses the PDF base fonts.
"""
from __future__ import annotations

from pathlib import Path

from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.colors import Color, HexColor
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from .credential import subject_name

NAVY, GOLD, GREY = HexColor("#1f2a44"), HexColor("#b8892b"), HexColor("#5b6270")
_FONT_CANDIDATES = [
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
     "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
]


def _unicode_fonts() -> tuple[str, str]:
    """Register and return (regular, bold) TrueType fonts able to draw most names."""
    if "CertSans" in pdfmetrics.getRegisteredFontNames():
        return "CertSans", "CertSans-Bold"
    import reportlab
    vera = Path(reportlab.__file__).parent / "fonts"
    for regular, bold in _FONT_CANDIDATES + [(str(vera / "Vera.ttf"), str(vera / "VeraBd.ttf"))]:
        if Path(regular).exists() and Path(bold).exists():
            pdfmetrics.registerFont(TTFont("CertSans", regular))
            pdfmetrics.registerFont(TTFont("CertSans-Bold", bold))
            return "CertSans", "CertSans-Bold"
    return "Helvetica", "Helvetica-Bold"


def _fit(c, text: str, font: str, size: float, max_width: float, min_size: float = 14) -> float:
    """The largest font size <= ``size`` at which ``text`` fits ``max_width``."""
    while size > min_size and c.stringWidth(text, font, size) > max_width:
        size -= 1
    return size


def _qr(c, value: str, x: float, y: float, size: float) -> None:
    widget = QrCodeWidget(value, barLevel="L", barBorder=2)
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
    drawing.add(widget)
    renderPDF.draw(drawing, c, x, y)


def write_certificate_pdf(path: Path, credential: dict, short_url: str,
                          demo: bool = False) -> Path:
    """Draw the certificate for a *signed* credential into ``path``; the QR code is
    ``short_url`` (the credential's public address, not the packed credential)."""
    sans, sans_bold = _unicode_fonts()
    width, height = landscape(A4)
    name = subject_name(credential) or "?"
    issuer = credential["issuer"]
    achievement = credential["credentialSubject"]["achievement"]
    c = canvas.Canvas(str(path), pagesize=(width, height), invariant=1)
    c.setTitle(f"{achievement['name']} - certificate of {name}")
    c.setAuthor(issuer["name"])
    c.setSubject(credential["id"])

    c.setFillColor(HexColor("#fbf9f4"))
    c.rect(0, 0, width, height, stroke=0, fill=1)
    c.setStrokeColor(NAVY)
    c.setLineWidth(6)
    c.rect(22, 22, width - 44, height - 44)
    c.setStrokeColor(GOLD)
    c.setLineWidth(1.2)
    c.rect(34, 34, width - 68, height - 68)

    if demo:
        c.saveState()
        c.setFillColor(Color(0.85, 0.2, 0.2, alpha=0.12))
        mark = "DEMO - NOT A REAL CERTIFICATE"
        c.setFont("Helvetica-Bold", _fit(c, mark, "Helvetica-Bold", 60, width - 230))
        c.translate(width / 2, height / 2)
        c.rotate(20)
        c.drawCentredString(0, -20, mark)
        c.restoreState()

    cx = width / 2
    c.setFillColor(GOLD)
    c.setFont("Helvetica-Bold", 11)
    c.drawCentredString(cx, height - 78, "I N F E R L A B   ·   "
                        "L L M   I N F E R E N C E   O P T I M I Z A T I O N")
    c.setFillColor(NAVY)
    c.setFont("Times-Bold", 40)
    c.drawCentredString(cx, height - 130, "Certificate of Completion")
    c.setFillColor(GREY)
    c.setFont("Times-Italic", 15)
    c.drawCentredString(cx, height - 170, "This certifies that")
    size = _fit(c, name, sans_bold, 34, width - 160)
    c.setFillColor(NAVY)
    c.setFont(sans_bold, size)
    c.drawCentredString(cx, height - 215, name)
    c.setStrokeColor(GOLD)
    c.setLineWidth(0.8)
    c.line(cx - 220, height - 228, cx + 220, height - 228)
    c.setFillColor(GREY)
    c.setFont("Times-Italic", 15)
    c.drawCentredString(cx, height - 255, "has completed the course")
    c.setFillColor(NAVY)
    c.setFont("Times-Bold", 24)
    c.drawCentredString(cx, height - 287, achievement["name"])
    c.setFillColor(GREY)
    c.setFont(sans, 9.5)
    y = height - 310
    for line in simpleSplit(achievement.get("description", ""), sans, 9.5, width - 260):
        c.drawCentredString(cx, y, line)
        y -= 13

    # bottom left: facts; bottom right: QR code
    left, base = 70, 150
    rows = [("Issued", credential["validFrom"][:10]),
            ("Issuer", issuer["name"]),
            ("Credential ID", credential["id"]),
            ("Signature", f"Ed25519 ({credential['proof']['cryptosuite']}), key "
                          f"{credential['proof']['verificationMethod'][-40:]}")]
    for i, (label, value) in enumerate(rows):
        yy = base - i * 22
        c.setFillColor(GOLD)
        c.setFont("Helvetica-Bold", 8)
        c.drawString(left, yy + 9, label.upper())
        c.setFillColor(NAVY)
        c.setFont(sans, 9)
        c.drawString(left, yy - 1, value)
    criteria = achievement.get("criteria", {}).get("narrative", "")
    c.setFillColor(GREY)
    c.setFont(sans, 7)
    yy = base - len(rows) * 22 + 4
    for line in simpleSplit("Criteria: " + criteria, sans, 7, 480)[:3]:
        c.drawString(left, yy, line)
        yy -= 9

    qr_size = 150
    qx, qy = width - 70 - qr_size, 52
    _qr(c, short_url, qx, qy, qr_size)
    c.setFillColor(NAVY)
    c.setFont("Helvetica-Bold", 9)
    c.drawCentredString(qx + qr_size / 2, qy + qr_size + 6, "Scan to verify")
    c.setFont("Helvetica", 7)
    c.drawCentredString(qx + qr_size / 2, qy - 8, short_url)
    c.showPage()
    c.save()
    return Path(path)
