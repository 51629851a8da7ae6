"""The school's documents, each made by the library that makes that format for real.

Builders return bytes. Dates inside documents are fixed (DOC_TIME) and every ZIP-based format is
rewritten by `fixed_zip` with fixed entry timestamps, so reruns give the same bytes.
"""

import csv
import datetime as dt
import io
import random
import zipfile

import docx
import openpyxl
import pptx
import xlwt
from docx.shared import Pt
from fpdf import FPDF
from odf import opendocument, table as odftable, text as odftext, style as odfstyle, number as odfnumber
from PIL import Image, ImageDraw

from people import OFFICE_PHONE, SCHOOL, not_an_identifier

DOC_TIME = dt.datetime(2026, 11, 20, 16, 45, 0)
ZIP_TIME = (2026, 11, 20, 16, 45, 0)


# ----------------------------------------------------------------------------------------------
# ZIP helpers.


def fixed_zip(data: bytes) -> bytes:
    """The same archive with every entry's timestamp fixed (order, names, methods kept: an ODF
    `mimetype` stays first and stored)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            new = zipfile.ZipInfo(info.filename, ZIP_TIME)
            new.compress_type = info.compress_type
            new.external_attr = 0o644 << 16
            new.create_system = 3
            dst.writestr(new, src.read(info.filename), compresslevel=9)
    return out.getvalue()


def zip_of(entries, compress=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type = compress
            info.external_attr = 0o644 << 16
            info.create_system = 3
            z.writestr(info, data, compresslevel=9)
    return out.getvalue()


# ----------------------------------------------------------------------------------------------
# Tables: (title, header, rows); cells are str or dt.date.


def class_list_table(pupils):
    rows = [[p.name, p.upn, p.dob, p.form] for p in sorted(pupils[:30], key=lambda p: (p.surname, p.first))]
    return "Class list 2026/27", ["Name", "UPN", "DOB", "Form"], rows


SEN_NEEDS = [
    ("SEMH", "EHCP", "Annual review due 03/2027; CAMHS referral open; key worker Mrs Okonkwo"),
    ("ASD", "EHCP", "Sensory breaks; visual timetable; 1:1 TA for 15 hours a week"),
    ("SpLD", "SEN support", "Dyslexia screening 10/2026; coloured overlays; extra time in tests"),
    ("SLCN", "SEN support", "Speech and language therapist every other Tuesday"),
    ("MLD", "SEN support", "Precision teaching in maths; IEP reviewed termly"),
    ("SEMH", "SEN support", "Early Help assessment in place; pupil premium; check-in each morning"),
    ("ASD", "SEN support", "Educational psychologist assessment requested"),
    ("HI", "EHCP", "Radio aid; Teacher of the Deaf visits half-termly"),
    ("SpLD", "SEN support", "Dyscalculia; reader for assessments"),
    ("PD", "EHCP", "Wheelchair user; personal evacuation plan; physio programme"),
    ("SLCN", "SEN support", "Stammer; no reading aloud unless he offers"),
    ("SEMH", "EHCP", "Reduced timetable agreed with the LA; EHCP review 12/2026"),
]


def sen_register_table(pupils):
    chosen = pupils[2:38:3]  # twelve pupils spread over the school
    rows = [[p.name, f"Year {p.year}", need, status, note]
            for p, (need, status, note) in zip(chosen, SEN_NEEDS)]
    return "SEN register – autumn term 2026", ["Name", "Year", "Primary need", "SEN status", "Notes"], rows


MEDICAL = [
    ("Asthma", "Salbutamol inhaler (blue), spacer in the medical room", "IHP reviewed 09/2026"),
    ("Anaphylaxis – peanut and tree nut allergy", "EpiPen 0.3 mg x2 (one in bag, one in the medical room); cetirizine", "IHP and allergy action plan 09/2026"),
    ("Type 1 diabetes", "Insulin pump; glucose tablets; hypo box in classroom", "IHP with diabetes nurse 10/2026"),
    ("Epilepsy (absence and tonic-clonic seizures)", "Buccal midazolam 10 mg – trained staff only", "IHP and seizure plan 09/2026"),
    ("Asthma", "Clenil inhaler (brown) at home; Salbutamol at school", "IHP reviewed 09/2026"),
    ("Anaphylaxis – egg allergy", "Jext 150 micrograms x2", "Allergy action plan 11/2026"),
    ("Coeliac disease", "Gluten-free diet; no medication in school", "Kitchen informed 09/2026"),
    ("Epilepsy", "Sodium valproate at home; rescue medication in the medical room", "IHP 09/2026"),
    ("Type 1 diabetes", "Insulin pen before lunch, supervised", "IHP with diabetes nurse 09/2026"),
    ("Asthma and eczema", "Salbutamol inhaler; emollient cream", "IHP reviewed 10/2026"),
]


def medical_table(pupils):
    chosen = pupils[1:40:4]
    rows = [[p.name, p.form, p.dob, cond, med, plan] for p, (cond, med, plan) in zip(chosen, MEDICAL)]
    return ("Pupils with medical needs – 2026/27",
            ["Pupil", "Form", "DOB", "Condition", "Medication", "Care plan"], rows)


def payroll_table(staff):
    rows = [[s.name, s.role, s.ni, f"£{s.salary:,}", s.sort_code, s.account] for s in staff]
    return ("Staff payroll – November 2026",
            ["Name", "Role", "NI number", "Annual salary", "Sort code", "Account number"], rows)


def cell_text(v) -> str:
    return v.strftime("%d/%m/%Y") if isinstance(v, dt.date) else str(v)


def csv_bytes(table) -> bytes:
    _, header, rows = table
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(header)
    for r in rows:
        w.writerow([cell_text(c) for c in r])
    # UTF-8 with BOM: what Excel writes for "CSV UTF-8", and what an MIS export opens with.
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


# ----------------------------------------------------------------------------------------------
# Spreadsheets.


def xlsx_bytes(table, sheet="Sheet1", creator="Arbor MIS export") -> bytes:
    title, header, rows = table
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(header)
    for r in rows:
        ws.append(r)
        for c in ws[ws.max_row]:
            if isinstance(c.value, dt.date):
                c.number_format = "DD/MM/YYYY"  # a real date cell, as the MIS exports it
    for col, width in zip("ABCDEF", [24, 16, 14, 40, 44, 22]):
        ws.column_dimensions[col].width = width
    wb.properties.creator = creator
    wb.properties.title = title
    wb.properties.created = DOC_TIME
    out = io.BytesIO()
    wb.save(out)
    return fixed_zip(fix_core_dates(out.getvalue()))


def fix_core_dates(data: bytes) -> bytes:
    """openpyxl stamps docProps/core.xml with the time of saving: put the fixed time back."""
    import re

    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    stamp = DOC_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp, body)
            dst.writestr(info, body)
    return out.getvalue()


def timetable_xlsx() -> bytes:
    periods = [("Registration", "08:45–09:00"), ("Period 1", "09:00–10:00"), ("Period 2", "10:00–11:00"),
               ("Break", "11:00–11:20"), ("Period 3", "11:20–12:20"), ("Lunch", "12:20–13:10"),
               ("Period 4", "13:10–14:10"), ("Period 5", "14:10–15:10")]
    subjects = [("Maths", "M4", "DKO"), ("English", "E2", "SWH"), ("Science", "S1", "ADE"),
                ("History", "H3", "GJO"), ("French", "L2", "MOB"), ("PE", "Sports hall", "TBA"),
                ("Art", "A1", "SWH"), ("Computing", "IT2", "DKO"), ("Music", "Mu1", "GJO")]
    rng = random.Random(7)
    header = ["Period", "Time", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
    rows = []
    for name, time in periods:
        if name in ("Registration", "Break", "Lunch"):
            rows.append([name, time] + ([("Form room 7B" if name == "Registration" else "")] * 5))
        else:
            cells = []
            for _ in range(5):
                s, room, teacher = rng.choice(subjects)
                cells.append(f"{s} – {room} ({teacher})")
            rows.append([name, time] + cells)
    return xlsx_bytes(("7B timetable 2026/27", header, rows), sheet="7B", creator="Timetabler")


def xls_bytes(table) -> bytes:
    _, header, rows = table
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Class list")
    date_style = xlwt.easyxf(num_format_str="DD/MM/YYYY")
    bold = xlwt.easyxf("font: bold on")
    for c, h in enumerate(header):
        ws.write(0, c, h, bold)
    for r, row in enumerate(rows, start=1):
        for c, v in enumerate(row):
            if isinstance(v, dt.date):
                ws.write(r, c, dt.datetime(v.year, v.month, v.day), date_style)
            else:
                ws.write(r, c, v)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _odf_fixed(doc) -> bytes:
    doc.meta.childNodes[:] = []  # no generator or save date: reruns give the same bytes
    out = io.BytesIO()
    doc.save(out)
    return fixed_zip(out.getvalue())


def ods_bytes(table) -> bytes:
    _, header, rows = table
    doc = opendocument.OpenDocumentSpreadsheet()
    # A date style, so dates are date cells shown as dd/mm/yyyy (as a real spreadsheet has them).
    ds = odfnumber.DateStyle(name="ukdate")
    ds.addElement(odfnumber.Day(style="long"))
    ds.addElement(odfnumber.Text(text="/"))
    ds.addElement(odfnumber.Month(style="long"))
    ds.addElement(odfnumber.Text(text="/"))
    ds.addElement(odfnumber.Year(style="long"))
    doc.automaticstyles.addElement(ds)
    datecell = odfstyle.Style(name="datecell", family="table-cell", datastylename="ukdate")
    doc.automaticstyles.addElement(datecell)
    t = odftable.Table(name="Class list")
    for row in [header] + rows:
        tr = odftable.TableRow()
        for v in row:
            if isinstance(v, dt.date):
                tc = odftable.TableCell(valuetype="date", datevalue=v.isoformat(), stylename=datecell)
            else:
                tc = odftable.TableCell(valuetype="string")
            tc.addElement(odftext.P(text=cell_text(v)))
            tr.addElement(tc)
        t.addElement(tr)
    doc.spreadsheet.addElement(t)
    return _odf_fixed(doc)


def odt_bytes(table) -> bytes:
    title, header, rows = table
    doc = opendocument.OpenDocumentText()
    doc.text.addElement(odftext.H(outlinelevel=1, text=title))
    doc.text.addElement(odftext.P(text=f"{SCHOOL} – for form tutors"))
    t = odftable.Table(name="ClassList")
    t.addElement(odftable.TableColumn(numbercolumnsrepeated=len(header)))
    for row in [header] + rows:
        tr = odftable.TableRow()
        for v in row:
            tc = odftable.TableCell(valuetype="string")
            tc.addElement(odftext.P(text=cell_text(v)))
            tr.addElement(tc)
        t.addElement(tr)
    doc.text.addElement(t)
    return _odf_fixed(doc)


# ----------------------------------------------------------------------------------------------
# Word documents.


def _docx_new(title: str, author: str):
    d = docx.Document()
    cp = d.core_properties
    cp.author = author
    cp.last_modified_by = author
    cp.title = title
    cp.created = DOC_TIME
    cp.modified = DOC_TIME
    cp.last_printed = DOC_TIME
    cp.revision = 1
    style = d.styles["Normal"]
    style.font.name = "Arial"
    style.font.size = Pt(11)
    return d


def _docx_bytes(d) -> bytes:
    out = io.BytesIO()
    d.save(out)
    return fixed_zip(out.getvalue())


def _docx_table(d, header, rows):
    t = d.add_table(rows=1, cols=len(header))
    t.style = "Table Grid"
    for c, h in zip(t.rows[0].cells, header):
        c.text = h
    for r in rows:
        cells = t.add_row().cells
        for c, v in zip(cells, r):
            c.text = cell_text(v)
    return t


def table_docx(table, author, intro) -> bytes:
    title, header, rows = table
    d = _docx_new(title, author)
    d.add_heading(title, level=1)
    d.add_paragraph(intro)
    _docx_table(d, header, rows)
    return _docx_bytes(d)


def cp_referral(pupil, dsl, address):
    """The CP referral form's content: (marking, title, fields, sections)."""
    fields = [
        ("Child's name", pupil.name),
        ("Date of birth", pupil.dob_uk),
        ("Year / form", f"Year {pupil.year} / {pupil.form}"),
        ("UPN", pupil.upn),
        ("ULN", pupil.uln),
        ("NHS number", pupil.nhs),
        ("Home address", address),
        ("School", f"{SCHOOL}, Example Road, Manchester M20 2XY"),
        ("Referrer", f"{dsl.name}, Designated Safeguarding Lead (DSL)"),
        ("Date of referral", "16 November 2026"),
    ]
    sections = [
        ("Concerns", [
            f"{pupil.name} (DOB {pupil.dob_uk}) has come to school hungry on most days since half term "
            "and has been wearing the same uniform, unwashed, for two weeks. On 12 November "
            f"{pupil.first} told a teaching assistant that there had been no food at home over the "
            "weekend and that an older sibling had been looking after the younger children overnight.",
            "Attendance has fallen to 81% this term. Staff have recorded six concerns on CPOMS about "
            "neglect since September, including an untreated dental abscess. Mum has not attended "
            "two meetings offered by the school.",
            f"We believe {pupil.first} is at risk of significant harm through neglect and ask that "
            "the local authority consider enquiries under section 47 of the Children Act 1989.",
        ]),
        ("Action taken", [
            f"12/11/2026: {dsl.name} (DSL) spoke to {pupil.first} with the class teacher present; "
            "breakfast club place arranged at no cost.",
            "13/11/2026: Consultation with MASH; advised to make this referral.",
            "16/11/2026: Referral sent. A strategy meeting is booked for 19/11/2026 at 10:00; the DSL "
            "will attend and bring attendance records and the chronology.",
            "Parent not informed of the referral, on the advice of children's social care.",
        ]),
    ]
    return ("OFFICIAL-SENSITIVE", "Child protection referral – Manchester MASH", fields, sections)


def cp_referral_docx(content, author) -> bytes:
    marking, title, fields, sections = content
    d = _docx_new(title, author)
    d.sections[0].header.paragraphs[0].text = marking
    p = d.add_paragraph()
    p.add_run(marking).bold = True
    d.add_heading(title, level=1)
    t = d.add_table(rows=0, cols=2)
    t.style = "Table Grid"
    for k, v in fields:
        cells = t.add_row().cells
        cells[0].text = k
        cells[1].text = v
    for heading, paras in sections:
        d.add_heading(heading, level=2)
        for text in paras:
            d.add_paragraph(text)
    return _docx_bytes(d)


def newsletter(pupils, staff):
    by = {p.name: p for p in pupils}
    senco = next(s for s in staff if s.role == "senco")
    head = next(s for s in staff if s.role == "headteacher")
    a, b, c = by["Amara Okafor"], by["Harry Evans"], by["Isla Campbell"]
    return (f"{SCHOOL} newsletter – November 2026", [
        ("Sport", [
            f"Congratulations to {a.name} and {b.name}, who both won gold at the county cross-country "
            "championships on Saturday 14 November, and to the Year 8 netball team, captained by "
            f"{c.name}, who are through to the regional finals in February.",
            "Thank you to every family who came to cheer: the PTA raised £412 at the refreshment stand.",
        ]),
        ("Dates for your diary", [
            "Thursday 3 December 2026, 4–7pm: parents' evening for Years 7 to 11.",
            "Wednesday 16 December 2026, 6pm: Christmas concert in the main hall.",
            "Friday 18 December 2026: term ends at 1.30pm. School reopens on Tuesday 5 January 2027.",
        ]),
        ("Year 6 SATs", [
            "Year 6 will sit their SATs in the week beginning Monday 10 May 2027. A meeting for Year 6 "
            "parents about how the tests work and how to help at home will be held on Tuesday "
            "19 January 2027 at 5.30pm.",
        ]),
        ("Support for every child", [
            f"Our SENCO {senco.formal} is available on Wednesday afternoons for any parent who would "
            "like to talk about extra support for their child; please book through the school office.",
            "Our pupil premium strategy statement for 2026–27 is now on the school website, with a "
            "report on how last year's funding was spent.",
            "The medical room has moved to the ground floor, next to the school office. If your child "
            "needs medicine during the school day, please ask the office for the form.",
        ]),
        ("Contact us", [
            f"The school office is open 8am to 4.30pm on {OFFICE_PHONE}, or email "
            "office@example-academy.sch.uk.",
            f"{head.name}, Headteacher",
        ]),
    ])


def prose_docx(content, author) -> bytes:
    title, sections = content
    d = _docx_new(title, author)
    d.add_heading(title, level=1)
    for heading, paras in sections:
        if heading:
            d.add_heading(heading, level=2)
        for text in paras:
            d.add_paragraph(text)
    return _docx_bytes(d)


def worksheet(seed=11):
    """A Year 7 maths worksheet: fractions, big numbers (none a valid ULN or NHS number), dates."""
    rng = random.Random(seed)
    big = [not_an_identifier(rng) for _ in range(4)]
    return ("Year 7 maths – fractions and big numbers", [
        ("Part A: fractions", [
            "1. Simplify 12/18, 35/42 and 64/96.",
            "2. Work out 3/4 + 5/6. Give your answer as a mixed number.",
            "3. Write 7/8 as a decimal and as a percentage.",
            "4. Which is larger, 5/9 or 4/7? Show your working.",
        ]),
        ("Part B: big numbers", [
            f"5. Round {big[0]} to the nearest million.",
            f"6. Write {big[1]} in words.",
            f"7. What is the value of the digit 7 in {big[2]}?",
            f"8. Work out {big[3]} − 1 234 567 890.",
        ]),
        ("Part C: problems with dates", [
            "9. Sam's football club meets every 14 days. The first meeting was on 6 September 2026. "
            "On what date is the fifth meeting?",
            "10. A school trip leaves on 20 January 2027 at 08:15 and returns at 17:40 the same day. "
            "How long is the trip, in hours and minutes?",
            "11. Mia saved 3/5 of her pocket money each week from 1 March 2026 to 31 May 2026. How many "
            "weeks is that, to the nearest whole week?",
        ]),
    ]), big


# ----------------------------------------------------------------------------------------------
# PDFs (fpdf2, core fonts: text must be Latin-1).


class _Pdf(FPDF):
    def __init__(self, title, marking=None):
        super().__init__(format="A4")
        self.marking = marking
        self.set_creation_date(DOC_TIME)
        self.set_title(title)
        self.set_author(SCHOOL)
        self.set_creator("Example Academy office")
        self.set_producer("fpdf2")
        self.set_auto_page_break(True, margin=15)
        self.add_page()

    def header(self):
        if self.marking:
            self.set_font("Helvetica", "B", 10)
            self.cell(0, 6, self.marking, align="C", new_x="LMARGIN", new_y="NEXT")

    def heading(self, text, size=14):
        self.set_font("Helvetica", "B", size)
        self.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def para(self, text):
        self.set_font("Helvetica", "", 10.5)
        self.multi_cell(0, 5.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def grid(self, header, rows, widths=None):
        self.set_font("Helvetica", "", 8.5)
        with self.table(col_widths=widths, text_align="LEFT", line_height=5) as t:
            for r in [header] + rows:
                row = t.row()
                for v in r:
                    row.cell(cell_text(v))
        self.ln(3)

    def bytes(self) -> bytes:
        return bytes(self.output())


def latin1(s: str) -> str:
    return s.replace("–", "-").replace("’", "'").replace("−", "-")


def table_pdf(table, intro, widths=None) -> bytes:
    title, header, rows = table
    pdf = _Pdf(latin1(title))
    pdf.heading(latin1(title))
    pdf.para(latin1(intro))
    pdf.grid(header, [[latin1(cell_text(v)) for v in r] for r in rows], widths)
    return pdf.bytes()


def cp_referral_pdf(content) -> bytes:
    marking, title, fields, sections = content
    pdf = _Pdf(latin1(title), marking=marking)
    pdf.heading(latin1(title))
    # "Label: value" lines, as a form filled in on screen prints: every reader keeps each value
    # beside its label (a two-column table is read column by column by some).
    for k, v in fields:
        pdf.para(f"{k}: {latin1(v)}")
    for heading, paras in sections:
        pdf.heading(heading, size=12)
        for text in paras:
            pdf.para(latin1(text))
    return pdf.bytes()


def prose_pdf(content) -> bytes:
    title, sections = content
    pdf = _Pdf(latin1(title))
    pdf.heading(latin1(title))
    for heading, paras in sections:
        if heading:
            pdf.heading(heading, size=12)
        for text in paras:
            pdf.para(latin1(text))
    return pdf.bytes()


def trip_letter(head):
    return ("Year 5 trip to the Natural History Museum", [
        ("", [
            "Dear Parent/Carer,",
            "Year 5 will visit the Natural History Museum in London on Wednesday 20 January 2027 as "
            "part of their science topic on evolution and inheritance. The coach leaves school at "
            "8.15am and returns at about 5.40pm.",
            "The cost is £12.50, payable on ParentPay by Friday 8 January 2027. Please talk to the "
            f"school office on {OFFICE_PHONE} in confidence if this is difficult. Children need a "
            "packed lunch, a waterproof coat and comfortable shoes.",
            "Yours sincerely,",
            f"{head.name}, Headteacher",
        ]),
        ("Reply slip", [
            "I give permission for my child to go on the Year 5 trip on 20 January 2027.",
            "Child's name: ______________________   Class: ________",
            "Signed (parent/carer): ______________________   Date: ________",
        ]),
    ])


def marked_note():
    return ("Note of meeting – staffing consultation", [
        ("", [
            "OFFICIAL-SENSITIVE [PERSONAL]",
            "Meeting between the headteacher, the chair of governors and the local authority HR "
            "adviser, 12 November 2026.",
            "The proposed restructure of the support staff team was discussed. Two posts are at "
            "risk; the individuals concerned will be told in person before the consultation opens "
            "on 30 November 2026. This note is not to be shared beyond the people named above.",
        ]),
    ])


# ----------------------------------------------------------------------------------------------
# Others.


def sen_pptx(table) -> bytes:
    title, header, rows = table
    prs = pptx.Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[5])  # title only
    slide.shapes.title.text = title
    shape = slide.shapes.add_table(len(rows) + 1, len(header), pptx.util.Inches(0.3),
                                   pptx.util.Inches(1.4), pptx.util.Inches(9.4), pptx.util.Inches(5.5))
    for c, h in enumerate(header):
        shape.table.cell(0, c).text = h
    for r, row in enumerate(rows, start=1):
        for c, v in enumerate(row):
            cell = shape.table.cell(r, c)
            cell.text = cell_text(v)
            for p in cell.text_frame.paragraphs:
                for run in p.runs:
                    run.font.size = pptx.util.Pt(9)
    cp = prs.core_properties
    cp.author = "Helen Okonkwo"
    cp.last_modified_by = "Helen Okonkwo"
    cp.title = title
    cp.created = DOC_TIME
    cp.modified = DOC_TIME
    cp.last_printed = DOC_TIME
    cp.revision = 1
    out = io.BytesIO()
    prs.save(out)
    return fixed_zip(out.getvalue())


def _rtf_escape(s: str) -> str:
    out = []
    for ch in s:
        if ch in "\\{}":
            out.append("\\" + ch)
        elif ord(ch) < 128:
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\u{code if code < 32768 else code - 65536}?")
    return "".join(out)


def sen_rtf(table) -> bytes:
    """RTF 1.9 as WordPad and Word write it: a table of \\trowd rows (no Python library writes
    RTF tables, so this is written directly; striprtf reads it back)."""
    title, header, rows = table
    widths = [2400, 1100, 1400, 1500, 4200]
    lines = [r"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0\fswiss Arial;}}",
             r"{\info{\title " + _rtf_escape(title) + r"}{\author Helen Okonkwo}"
             r"{\creatim\yr2026\mo11\dy20\hr16\min45}}",
             r"\viewkind4\uc1\pard\f0\fs28\b " + _rtf_escape(title) + r"\b0\fs20\par"]
    for row in [header] + rows:
        cells = r"\trowd\trgaph108"
        x = 0
        for w in widths:
            x += w
            cells += rf"\clbrdrt\brdrs\clbrdrl\brdrs\clbrdrb\brdrs\clbrdrr\brdrs\cellx{x}"
        lines.append(cells)
        lines.append(r"\pard\intbl " + "".join(_rtf_escape(cell_text(v)) + r"\cell " for v in row) + r"\row")
    lines.append(r"\pard\par}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def photo_jpeg() -> bytes:
    """A sports-day photo drawn by Pillow (no real person), with EXIF like a phone camera's."""
    rng = random.Random(3)
    img = Image.new("RGB", (800, 600), (120, 180, 235))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 380, 800, 600], fill=(70, 150, 60))
    for lane in range(6):
        y = 400 + lane * 32
        d.line([0, y, 800, y], fill=(245, 245, 245), width=3)
    for _ in range(8):
        x, y = rng.randint(40, 760), rng.randint(300, 520)
        d.ellipse([x - 10, y - 60, x + 10, y - 40], fill=(230, 190, 150))
        d.rectangle([x - 12, y - 40, x + 12, y], fill=rng.choice([(200, 30, 30), (30, 30, 200), (250, 200, 0)]))
    d.ellipse([650, 40, 730, 120], fill=(255, 230, 90))
    exif = Image.Exif()
    exif[0x010F] = "ExampleCam"  # Make
    exif[0x0110] = "Model 7"  # Model
    exif[0x0131] = "Pillow"  # Software
    exif[0x013B] = "Example Academy"  # Artist
    exif[0x0132] = "2026:07:10 11:32:05"  # DateTime
    exif[0x010E] = "Sports day 2026"  # ImageDescription
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2026:07:10 11:32:05"  # DateTimeOriginal
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, exif=exif.tobytes())
    return out.getvalue()
