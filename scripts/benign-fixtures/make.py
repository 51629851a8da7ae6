"""Builds fixtures/benign/ (school documents that must NOT be held) and fixtures/held/ (documents
about named pupils that must be held), in several formats each, and the school's directory.
Run through scripts/make-benign-fixtures, which makes the venv with the pinned libraries.

  make.py [ROOT]     (ROOT defaults to the repository)

PDFs are made with fpdf2 as a school's software makes them: paragraphs wrapped to the page
(multi_cell), tables, two columns side by side; half in the built-in Helvetica (no widths in the
file) and half in an embedded TrueType font (widths in the file). Documents are reproducible: fixed
creation dates, fixed ZIP timestamps.
"""

import csv
import datetime as dt
import html
import io
import sys
import zipfile
from pathlib import Path

import docx
import openpyxl
from fpdf import FPDF
from fpdf.enums import XPos, YPos

import content

ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
DOC_TIME = dt.datetime(2026, 11, 20, 16, 45, 0, tzinfo=dt.timezone.utc)
ZIP_TIME = (2026, 11, 20, 16, 45, 0)
TTF = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
TTF_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def fixed_zip(data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            new = zipfile.ZipInfo(info.filename, ZIP_TIME)
            new.compress_type = zipfile.ZIP_DEFLATED
            new.external_attr = 0o644 << 16
            new.create_system = 3
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                import re
                stamp = DOC_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                body = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp, body)
            dst.writestr(new, body, compresslevel=9)
    return out.getvalue()


def latin(s: str) -> str:
    """Text the built-in Helvetica can show (Windows-1252)."""
    return (s.replace("–", "-").replace("—", "-").replace("’", "'").replace("‘", "'")
             .replace("“", '"').replace("”", '"').encode("cp1252", "replace").decode("cp1252"))


def tables(blocks):
    return [b for b in blocks if b[0] == "table"]


def pdf_bytes(title, blocks, truetype: bool) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(DOC_TIME)
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    if truetype:
        pdf.add_font("body", "", str(TTF))
        pdf.add_font("body", "B", str(TTF_BOLD))
        family, t = "body", (lambda s: s)
    else:
        family, t = "helvetica", latin
    pdf.set_font(family, "B", 16)
    pdf.multi_cell(0, 9, t(title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    for block in blocks:
        kind = block[0]
        if kind == "h":
            pdf.set_font(family, "B", 13)
            pdf.multi_cell(0, 7, t(block[1]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1)
        elif kind == "p":
            pdf.set_font(family, "", 11)
            pdf.multi_cell(0, 5.5, t(block[1]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(3)
        elif kind == "table":
            _, header, rows = block
            pdf.set_font(family, "", 10)
            with pdf.table(first_row_as_headings=True, line_height=5.5) as table:
                for r in [header] + rows:
                    row = table.row()
                    for cell in r:
                        row.cell(t(str(cell)))
            pdf.ln(4)
        elif kind == "cols":
            _, left, right = block
            pdf.set_font(family, "", 11)
            top = pdf.get_y()
            width = (pdf.w - 40 - 10) / 2
            bottoms = []
            for x, paras in ((20, left), (20 + width + 10, right)):
                pdf.set_xy(x, top)
                for p in paras:
                    pdf.set_x(x)
                    pdf.multi_cell(width, 5.5, t(p), new_x=XPos.LEFT, new_y=YPos.NEXT)
                    pdf.ln(3)
                bottoms.append(pdf.get_y())
            pdf.set_xy(20, max(bottoms))
    return bytes(pdf.output())


def docx_bytes(title, blocks) -> bytes:
    d = docx.Document()
    d.core_properties.created = DOC_TIME.replace(tzinfo=None)
    d.core_properties.modified = DOC_TIME.replace(tzinfo=None)
    d.core_properties.author = "Example Academy"
    d.add_heading(title, level=1)
    for block in blocks:
        kind = block[0]
        if kind == "h":
            d.add_heading(block[1], level=2)
        elif kind == "p":
            d.add_paragraph(block[1])
        elif kind == "table":
            _, header, rows = block
            table = d.add_table(rows=0, cols=len(header))
            table.style = "Table Grid"
            for r in [header] + rows:
                cells = table.add_row().cells
                for c, v in zip(cells, r):
                    c.text = str(v)
        elif kind == "cols":
            for p in block[1] + block[2]:
                d.add_paragraph(p)
    out = io.BytesIO()
    d.save(out)
    return fixed_zip(out.getvalue())


def html_bytes(title, blocks) -> bytes:
    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en-GB\"><head><meta charset=\"utf-8\"><title>{e(title)}</title></head><body>",
             f"<h1>{e(title)}</h1>"]
    for block in blocks:
        kind = block[0]
        if kind == "h":
            parts.append(f"<h2>{e(block[1])}</h2>")
        elif kind == "p":
            parts.append(f"<p>{e(block[1])}</p>")
        elif kind == "table":
            _, header, rows = block
            parts.append("<table>")
            parts.append("<tr>" + "".join(f"<th>{e(str(c))}</th>" for c in header) + "</tr>")
            for r in rows:
                parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>")
            parts.append("</table>")
        elif kind == "cols":
            parts.append("<div class=\"columns\">")
            for side in block[1:]:
                parts.append("<div>" + "".join(f"<p>{e(p)}</p>" for p in side) + "</div>")
            parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts).encode("utf-8")


def txt_bytes(title, blocks) -> bytes:
    lines = [title, "=" * len(title), ""]
    for block in blocks:
        kind = block[0]
        if kind in ("h", "p"):
            lines += [block[1], ""]
        elif kind == "table":
            _, header, rows = block
            for r in [header] + rows:
                lines.append("\t".join(str(c) for c in r))
            lines.append("")
        elif kind == "cols":
            for p in block[1] + block[2]:
                lines += [p, ""]
    return "\n".join(lines).encode("utf-8")


def csv_bytes(title, blocks) -> bytes:
    _, header, rows = tables(blocks)[0]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(header)
    for r in rows:
        w.writerow(r)
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def xlsx_bytes(title, blocks) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append([title])
    ws.append([])
    for _, header, rows in tables(blocks):
        ws.append(header)
        for r in rows:
            ws.append(r)
        ws.append([])
    wb.properties.creator = "Example Academy"
    wb.properties.created = DOC_TIME.replace(tzinfo=None)
    wb.properties.modified = DOC_TIME.replace(tzinfo=None)
    out = io.BytesIO()
    wb.save(out)
    return fixed_zip(out.getvalue())


def build(docs, outdir: Path, start: int) -> list:
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.iterdir():
        if old.is_file() and old.name not in ("README.md", "directory.csv"):
            old.unlink()
    made = []
    n = start
    for stem, formats, title, blocks in docs:
        for f in formats:
            if f == "pdf":
                data = pdf_bytes(title, blocks, truetype=n % 2 == 1)
                n += 1
            elif f == "docx":
                data = docx_bytes(title, blocks)
            elif f == "html":
                data = html_bytes(title, blocks)
            elif f == "txt":
                data = txt_bytes(title, blocks)
            elif f == "csv":
                data = csv_bytes(title, blocks)
            elif f == "xlsx":
                data = xlsx_bytes(title, blocks)
            else:
                raise ValueError(f)
            name = f"{stem}.{f}"
            (outdir / name).write_bytes(data)
            made.append(name)
    return made


def directory_csv() -> str:
    lines = ["role,name,school_email,personal_emails,personal_phones,date_of_birth,status"]
    for role, _, name, _, addr in content.STAFF:
        lines.append(f"{role},\"{name}\",{addr}@example-academy.sch.uk,,,,current")
    for f, s, dob, _ in content.PUPILS:
        local = f"{f[0]}.{s}".lower().replace("'", "").replace("â", "a")
        lines.append(f"pupil,\"{f} {s}\",{local}@pupils.example-academy.sch.uk,,,{dob},current")
    return "\n".join(lines) + "\n"


def main():
    for font in (TTF, TTF_BOLD):
        if not font.exists():
            sys.exit(f"make-benign-fixtures: {font} is missing (apt-get install fonts-dejavu-core)")
    benign = build(content.benign(), ROOT / "fixtures" / "benign", 0)
    held = build(content.sensitive(), ROOT / "fixtures" / "held", 1)
    (ROOT / "fixtures" / "benign" / "directory.csv").write_text(directory_csv(), encoding="utf-8")
    print(f"fixtures/benign: {len(benign)} documents; fixtures/held: {len(held)} documents")


main()
