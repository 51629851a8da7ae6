"""Builds fixtures/sensitive/ (see scripts/make-sensitive-fixtures for what it needs and why the
outputs are committed). Run through that script: it makes the venv with the pinned libraries.

  make.py [OUTDIR]

Writes directory.csv, files/ (the attachments), messages/ (one .eml per case), bombs/ (bombs and
damaged files, each with its .eml), expect.json and README.md; then reads every file back with a
second reader (verify.py) and fails if any check does.
"""

import datetime
import email.policy
import email.utils
import json
import random
import shutil
import sys
import tempfile
from base64 import b64encode
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import bombs
import documents as doc
import protect
import verify
from people import TODAY, directory_csv, make_people

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "fixtures" / "sensitive"

MIME = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "xls": "application/vnd.ms-excel",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odt": "application/vnd.oasis.opendocument.text",
    "pdf": "application/pdf",
    "csv": "text/csv",
    "rtf": "application/rtf",
    "zip": "application/zip",
    "jpg": "image/jpeg",
    "p7m": "application/pkcs7-mime",
    "eml": "message/rfc822",
}

# What must fire for each kind of content (the test checks "at least these").
CLASS_LIST = ["upn", "date-of-birth", "pupil-name"]
SEN = ["special-category", "pupil-name"]
CP = ["upn", "uln", "nhs-number", "date-of-birth", "pupil-name", "special-category", "protective-marking"]
PAYROLL = ["ni-number"]
MEDICAL = ["date-of-birth", "pupil-name", "special-category"]
MARKED = ["protective-marking"]


@dataclass
class File:
    """One file under files/ or bombs/: what it is, and what opening it must find."""
    path: str  # relative to OUT
    data: bytes
    about: str
    holds: str  # "sensitive", "harmless", "encrypted", "unscannable"


@dataclass
class Attach:
    name: str  # the name the recipient sees
    file: File | None = None  # a file of ours (None: `data` given)
    data: bytes | EmailMessage | None = None
    mime: str = ""
    params: dict = field(default_factory=dict)
    name_style: str = "plain"  # "plain", "rfc2231" (what Python, Gmail, Thunderbird write) or "encoded-word" (Outlook)
    detectors: list | None = None  # sensitive: what must fire; None: no finding
    unscannable: bool = False


@dataclass
class Case:
    path: str  # messages/NAME.eml or bombs/NAME.eml
    sender: str
    to: str
    subject: str
    body: str
    attachments: list
    about: str
    root: tuple | None = None  # (bytes, content-type params): a body-only message's own content


files: dict[str, File] = {}


def add(path, data, about, holds) -> File:
    f = File(path, data, about, holds)
    files[path] = f
    return f


def build():
    pupils, staff = make_people()
    head, dsl, senco, office = (next(s for s in staff if s.role == r)
                                for r in ("headteacher", "dsl", "senco", "office"))
    tom = next(s for s in staff if s.name == "Tom Baker")
    who = lambda s: f"{s.name} <{s.email}>"  # noqa: E731

    work = Path(tempfile.mkdtemp(prefix="sensitive-fixtures-"))
    try:
        return _build(pupils, staff, head, dsl, senco, office, tom, who, work)
    finally:
        shutil.rmtree(work)


def _build(pupils, staff, head, dsl, senco, office, tom, who, work):
    by = {p.name: p for p in pupils}
    class_list = doc.class_list_table(pupils)
    sen = doc.sen_register_table(pupils)
    med = doc.medical_table(pupils)
    pay = doc.payroll_table(staff)
    cp_pupil = by["Oliver Bennett"]
    cp = doc.cp_referral(cp_pupil, dsl, "27 Alder Street, Manchester M14 5QT")

    # ------------------------------------------------------------------------------------------
    # Attachments.
    F = "files/"
    cl_xlsx = add(F + "class-list.xlsx", doc.xlsx_bytes(class_list, "Class list"),
                  "Class list: Name, UPN, DOB (date cells shown dd/mm/yyyy), Form; 30 pupils", "sensitive")
    cl_csv = add(F + "class-list.csv", doc.csv_bytes(class_list),
                 "The class list as CSV (UTF-8 with BOM, CRLF)", "sensitive")
    cl_xls = add(F + "class-list.xls", doc.xls_bytes(class_list),
                 "The class list as legacy Excel 97-2003 BIFF8 (xlwt), DOB as date cells", "sensitive")
    cl_ods = add(F + "class-list.ods", doc.ods_bytes(class_list),
                 "The class list as an OpenDocument spreadsheet (odfpy), DOB as date cells", "sensitive")
    cl_odt = add(F + "class-list.odt", doc.odt_bytes(class_list),
                 "The class list as a table in an OpenDocument text (odfpy)", "sensitive")
    cl_pdf = doc.table_pdf(class_list, "For form tutors. Please keep this list in school.",
                           widths=(3, 2, 1.4, 1))
    cl_owner = add(F + "class-list-owner-password.pdf", protect.pdf_encrypt(cl_pdf, ""),
                   "The class list as a PDF with an OWNER password only (AES-256, copying and "
                   "printing 'restricted'): opens without a password, so it is in clear", "sensitive")
    cl_nested = add(F + "class-list-nested.zip",
                    doc.zip_of([("Year groups/class-lists.zip",
                                 doc.zip_of([("class-list.csv", cl_csv.data)]))]),
                    "A ZIP holding a ZIP holding class-list.csv (no encryption)", "sensitive")
    cl_pw = add(F + "class-list-password.xlsx", protect.office_encrypt(cl_xlsx.data, 1),
                "class-list.xlsx password-protected by Excel's 'Encrypt with password' (agile)", "encrypted")
    cl_aes = add(F + "class-list-aes256.zip", protect.aes_zip([("class-list.xlsx", cl_xlsx.data)], 2),
                 "class-list.xlsx in an AES-256 ZIP (WinZip AE-2, method 99)", "encrypted")
    p7m, cert, key = protect.cms_envelope(cl_csv.data, work)
    cl_p7m = add(F + "class-list.p7m", p7m,
                 "class-list.csv as CMS enveloped data (openssl cms -encrypt, AES-256, RSA recipient)",
                 "encrypted")

    sen_xlsx = add(F + "sen-register.xlsx", doc.xlsx_bytes(sen, "SEN register"),
                   "SEN register: Name, Year, Primary need, SEN status (EHCP / SEN support), Notes; 12 pupils",
                   "sensitive")
    sen_csv = add(F + "sen-register.csv", doc.csv_bytes(sen), "The SEN register as CSV", "sensitive")
    sen_pptx = add(F + "sen-register.pptx", doc.sen_pptx(sen),
                   "The SEN register as a table on a PowerPoint slide (python-pptx)", "sensitive")
    sen_rtf = add(F + "sen-register.rtf", doc.sen_rtf(sen),
                  "The SEN register as an RTF table (written directly, RTF 1.9 syntax)", "sensitive")
    sen_aes = add(F + "sen-register-aes256.zip", protect.aes_zip([("sen-register.xlsx", sen_xlsx.data)], 3),
                  "sen-register.xlsx in an AES-256 ZIP", "encrypted")
    sen_zc = add(F + "sen-register-zipcrypto.zip", protect.zipcrypto_zip([("sen-register.csv", sen_csv.data)]),
                 "sen-register.csv in a ZipCrypto (traditional PKWARE) ZIP made by 7-Zip", "encrypted")

    cp_docx = add(F + "cp-referral.docx", doc.cp_referral_docx(cp, dsl.name),
                  "Child protection referral (one pupil: name, DOB, UPN, ULN, NHS number, address, "
                  "neglect, section 47, strategy meeting, DSL), marked OFFICIAL-SENSITIVE", "sensitive")
    cp_pdf_clear = doc.cp_referral_pdf(cp)
    cp_pdf = add(F + "cp-referral.pdf", cp_pdf_clear, "The CP referral as a PDF", "sensitive")
    cp_pdf_pw = add(F + "cp-referral-password.pdf", protect.pdf_encrypt(cp_pdf_clear, protect.PASSWORD),
                    "The CP referral PDF with a user password (AES-256, R6)", "encrypted")
    cp_docx_pw = add(F + "cp-referral-password.docx", protect.office_encrypt(cp_docx.data, 4),
                     "cp-referral.docx password-protected (agile)", "encrypted")

    pay_xlsx = add(F + "staff-payroll.xlsx", doc.xlsx_bytes(pay, "November 2026", creator="Payroll"),
                   "Staff payroll: Name, Role, NI number, salary, sort code, account; 10 staff", "sensitive")
    pay_pw = add(F + "staff-payroll-password.xlsx", protect.office_encrypt(pay_xlsx.data, 5),
                 "staff-payroll.xlsx password-protected (agile)", "encrypted")

    med_docx = add(F + "medical-needs.docx",
                   doc.table_docx(med, office.name, "Please keep this list in the medical room and the staff room."),
                   "Medical needs list (Word table): pupil, form, DOB, condition (asthma, anaphylaxis - "
                   "EpiPen, type 1 diabetes, epilepsy), medication, care plan; 10 pupils", "sensitive")
    med_pdf_clear = doc.table_pdf(med, "Please keep this list in the medical room and the staff room.",
                                  widths=(2.2, 0.8, 1.4, 3, 3.6, 2.4))
    med_pdf = add(F + "medical-needs.pdf", med_pdf_clear, "The medical needs list as a PDF", "sensitive")
    med_aes = add(F + "medical-needs-aes256.zip", protect.aes_zip([("medical-needs.docx", med_docx.data)], 6),
                  "medical-needs.docx in an AES-256 ZIP", "encrypted")
    med_pw = add(F + "medical-needs-password.pdf", protect.pdf_encrypt(med_pdf_clear, protect.PASSWORD),
                 "The medical needs PDF with a user password (AES-256, R6)", "encrypted")

    note = add(F + "official-sensitive-note.docx", doc.prose_docx(doc.marked_note(), head.name),
               "A note of a meeting marked OFFICIAL-SENSITIVE [PERSONAL]: no pupil, no identifier", "sensitive")

    news = doc.newsletter(pupils, staff)
    news_docx = add(F + "newsletter.docx", doc.prose_docx(news, head.name),
                    "Newsletter: congratulates 3 named pupils on sport; mentions 'our SENCO Mrs Okonkwo', "
                    "the pupil premium strategy, the medical room, Year 6 SATs, event dates and the "
                    "office phone number, each in its own paragraph away from the pupils' names", "harmless")
    news_pdf = add(F + "newsletter.pdf", doc.prose_pdf(news), "The newsletter as a PDF", "harmless")
    timetable = add(F + "timetable.xlsx", doc.timetable_xlsx(),
                    "A form's timetable: periods, times, subjects, rooms, teachers' initials", "harmless")
    ws_content, big_numbers = doc.worksheet()
    worksheet = add(F + "maths-worksheet.docx", doc.prose_docx(ws_content, "David Kowalczyk"),
                    "Year 7 maths worksheet: fractions, 10-digit numbers that are neither valid ULNs nor "
                    f"valid NHS numbers ({', '.join(big_numbers)}), dates in word problems", "harmless")
    photo = add(F + "sports-day.jpg", doc.photo_jpeg(),
                "A drawn sports-day picture (JPEG, Pillow) with EXIF: Make, Model, Artist, DateTimeOriginal",
                "harmless")
    trip = add(F + "trip-letter.pdf", doc.prose_pdf(doc.trip_letter(head)),
               "A trip letter to parents (dates, cost, the office phone number, a blank reply slip)", "harmless")

    # A message a colleague forwarded, kept as a file: the class list CSV attached to it.
    fwd_inner = message(Case("files/forwarded-class-list.eml", who(tom), who(senco),
                             "Class list for the new term", "Hi Helen,\n\nHere's the class list as "
                             "you asked.\n\nTom\n", [Attach("class-list.csv", cl_csv)], ""), 0)
    fwd_eml = add(F + "forwarded-class-list.eml", fwd_inner,
                  "A saved message (Tom Baker to the SENCO) with class-list.csv attached", "sensitive")

    # ------------------------------------------------------------------------------------------
    # Bombs and damaged files.
    B = "bombs/"
    gib = 1 << 30
    bomb_zip = add(B + "zip-1gib-zeros.zip", bombs.zeros_zip("pupil-data.csv", gib),
                   "One deflated entry of 1 GiB of zeros", "unscannable")
    bomb_42 = add(B + "zip-nested-42.zip", bombs.nested_zip(levels=6, fan=16, leaf_size=256 << 20),
                  "42.zip's shape: 6 ZIP levels, 16 copies per level, each innermost ZIP holding 256 MiB "
                  "of zeros: 16^5 x 256 MiB = 256 TiB in all", "unscannable")
    # The ZIP with 100,000 entries (19 MB with its message) is built by the tests and by
    # scripts/bench-bombs (bombs.many_entries_zip), not committed.
    bomb_cycle = add(B + "pdf-cyclic-pages.pdf", bombs.cyclic_pages_pdf(),
                     "A PDF whose inner Pages node lists its parent among its Kids (a cycle); exact xref",
                     "unscannable")
    bomb_flate = add(B + "pdf-flate-bomb.pdf", bombs.flate_bomb_pdf(gib),
                     "A one-page PDF whose content stream inflates to 1 GiB of zeros", "unscannable")
    bomb_trunc = add(B + "xlsx-truncated.xlsx", bombs.truncated(cl_xlsx.data, 0.6),
                     "The first 60% of class-list.xlsx: no central directory", "unscannable")
    bomb_sheet = add(B + "xlsx-sheet-bomb.xlsx", bombs.sheet_bomb_xlsx(timetable.data, 64 << 20),
                     "timetable.xlsx with 64 MiB of white space inside <sheetData> of sheet1.xml", "unscannable")

    # ------------------------------------------------------------------------------------------
    # Messages.
    mash = "Manchester MASH <mash@county.gov.example>"
    la_sen = "SEN Team <sen.team@county.gov.example>"
    parent = "Jo Bennett <jo.bennett1984@gmail.com>"
    bureau = "Payroll Bureau <payroll@schools-payroll.example>"
    nurse = "School Nursing Team <school.nurses@nhs-trust.example>"
    tutor = "Supply Teacher <k.supply.teacher@gmail.com>"
    trip_co = "Bookings <bookings@museum-trips.example>"
    M = "messages/"
    cases = []

    def case(name, sender, to, subject, body, attachments, about, root=None, where=M):
        cases.append(Case(where + name + ".eml", sender, to, subject, body, attachments, about, root))

    sensitive = lambda f, dets, **kw: Attach(f.path.rsplit("/", 1)[1], f, detectors=dets, **kw)  # noqa: E731
    clear = lambda f, **kw: Attach(f.path.rsplit("/", 1)[1], f, **kw)  # noqa: E731

    case("class-list-xlsx", who(tom), tutor, "Class list", "Here is the class list for Monday.\n",
         [sensitive(cl_xlsx, CLASS_LIST)], "A class list spreadsheet with UPNs and dates of birth, in clear.")
    case("class-list-xlsx-rfc2231-name", who(tom), tutor, "Class list for Zoë’s form",
         "Attached, as promised.\n",
         [Attach("Class list – Year 7 (Zoë’s form).xlsx", cl_xlsx, detectors=CLASS_LIST, name_style="rfc2231")],
         "The class list under a long non-ASCII file name in RFC 2231 form, split into continuations "
         "(filename*0*=utf-8''…; filename*1*=…), as Python and Thunderbird write it.")
    case("class-list-csv", who(office), tutor, "Class list CSV", "The export from the MIS.\n",
         [sensitive(cl_csv, CLASS_LIST)], "The class list as CSV, in clear.")
    case("class-list-xls", who(office), tutor, "Class list (old Excel)", "In the old format.\n",
         [sensitive(cl_xls, CLASS_LIST)], "The class list as a legacy .xls, in clear.")
    case("class-list-ods", who(tom), tutor, "Class list (LibreOffice)", "Spreadsheet attached.\n",
         [sensitive(cl_ods, CLASS_LIST)], "The class list as .ods, in clear.")
    case("class-list-odt", who(tom), tutor, "Class list (document)", "As a document this time.\n",
         [sensitive(cl_odt, CLASS_LIST)], "The class list as a table in an .odt, in clear.")
    case("class-list-owner-password-pdf", who(office), tutor, "Class list (PDF)",
         "I've protected it so it can't be edited.\n", [sensitive(cl_owner, CLASS_LIST)],
         "A PDF with only an owner password opens without one: still sensitive in clear.")
    case("class-list-nested-zip", who(tom), tutor, "Class lists", "Zipped up to keep it small.\n",
         [sensitive(cl_nested, CLASS_LIST)], "A class list in a ZIP in a ZIP, none encrypted.")
    case("class-list-attached-eml", who(senco), la_sen, "FW: Class list for the new term",
         "Forwarding Tom's message below.\n",
         [Attach("Class list for the new term.eml", fwd_eml, data=message_from_bytes(
             fwd_eml.data, policy=email.policy.SMTP), detectors=CLASS_LIST)],
         "A saved message (.eml, message/rfc822) attached, carrying the class list CSV.")
    fwd_xlsx = message_from_bytes(message(Case("", who(tom), who(senco), "Class list for Monday",
                                               "Class list attached.\n", [Attach("class-list.xlsx", cl_xlsx)],
                                               ""), 1), policy=email.policy.SMTP)
    case("class-list-forwarded-rfc822", who(senco), la_sen, "Fwd: Class list for Monday",
         "See the forwarded message.\n",
         [Attach("Class list for Monday.eml", data=fwd_xlsx, mime="message/rfc822", detectors=CLASS_LIST)],
         "The class list .xlsx attached to a forwarded message (message/rfc822 part).")
    case("two-attachments", who(tom), tutor, "For your cover lessons",
         "The timetable and the class list.\n", [clear(timetable), sensitive(cl_xlsx, CLASS_LIST)],
         "Two attachments: the harmless timetable, then the class list: one finding, for the class list.")

    case("sen-register-xlsx", who(senco), la_sen, "SEN register", "Our register for the LA return.\n",
         [sensitive(sen_xlsx, SEN)], "The SEN register (needs and EHCP status beside names), in clear.")
    case("sen-register-csv-encoded-word-name", who(senco), la_sen, "SEN register (CSV)",
         "CSV version attached.\n",
         [Attach("SEN register – Siân’s copy.csv", sen_csv, detectors=SEN, name_style="encoded-word")],
         "The SEN register as CSV under a non-ASCII name as an RFC 2047 encoded word (as Outlook writes it).")
    case("sen-register-pptx", who(senco), la_sen, "SEN slides", "The slide from the governors' meeting.\n",
         [sensitive(sen_pptx, SEN)], "The SEN register as a PowerPoint table, in clear.")
    case("sen-register-rtf", who(senco), la_sen, "SEN register (RTF)", "Saved from WordPad.\n",
         [sensitive(sen_rtf, SEN)], "The SEN register as an RTF table, in clear.")

    case("cp-referral-docx", who(dsl), mash, "Referral", "Please find our referral attached.\n",
         [sensitive(cp_docx, CP)], "A child protection referral as Word, in clear.")
    case("cp-referral-pdf", who(dsl), mash, "Referral (PDF)", "PDF copy attached.\n",
         [sensitive(cp_pdf, CP)], "The child protection referral as PDF, in clear.")
    case("staff-payroll-xlsx", who(office), bureau, "November payroll", "November's figures.\n",
         [sensitive(pay_xlsx, PAYROLL)], "Staff payroll with NI numbers, in clear.")
    case("medical-needs-docx-encoded-word-name", who(office), nurse, "Medical needs list",
         "The list for the school nurse.\n",
         [Attach("Medical needs – autumn ’26.docx", med_docx, detectors=MEDICAL, name_style="encoded-word")],
         "The medical needs list (Word) under an encoded-word non-ASCII name, in clear.")
    case("medical-needs-pdf", who(office), nurse, "Medical needs (PDF)", "PDF copy.\n",
         [sensitive(med_pdf, MEDICAL)], "The medical needs list as PDF, in clear.")
    case("official-sensitive-note-docx", who(head), "HR Adviser <hr.adviser@county.gov.example>",
         "Note of our meeting", "Note attached.\n", [sensitive(note, MARKED)],
         "A document marked OFFICIAL-SENSITIVE (and nothing else sensitive), in clear.")

    case("class-list-password-xlsx", who(tom), tutor, "Class list (protected)",
         "Password to follow by text.\n", [clear(cl_pw)], "The class list in a password-protected xlsx.")
    case("class-list-aes-zip", who(tom), tutor, "Class list (zip)", "Password to follow by phone.\n",
         [clear(cl_aes)], "The class list in an AES-256 ZIP.")
    case("class-list-smime-attachment", who(office), mash, "Class list (S/MIME)",
         "Encrypted for your certificate.\n",
         [Attach("smime.p7m", cl_p7m, mime="application/pkcs7-mime",
                 params={"smime-type": "enveloped-data", "name": "smime.p7m"})],
         "The class list CSV as an S/MIME enveloped-data attachment (smime.p7m).")
    case("class-list-smime-message", who(office), mash, "Class list (encrypted message)", "",
         [], "A whole message S/MIME-encrypted (application/pkcs7-mime at the root) whose "
         "inside carries the class list CSV.",
         root=("smime", protect.cms_envelope(message(Case("", who(office), mash, "Class list",
                                                               "Class list attached.\n",
                                                               [Attach("class-list.csv", cl_csv)], ""), 2,
                                                          entity_only=True), work)[0]))
    case("sen-register-aes-zip", who(senco), la_sen, "SEN register (zip)", "Password by phone.\n",
         [clear(sen_aes)], "The SEN register in an AES-256 ZIP.")
    case("sen-register-zipcrypto-zip", who(senco), la_sen, "SEN register (zip)", "Password by phone.\n",
         [clear(sen_zc)], "The SEN register CSV in a ZipCrypto ZIP (weak, but encrypted).")
    case("cp-referral-password-pdf", who(dsl), mash, "Referral (protected)", "Password by phone.\n",
         [clear(cp_pdf_pw)], "The CP referral PDF with a user password.")
    case("cp-referral-password-docx", who(dsl), mash, "Referral (protected)", "Password by phone.\n",
         [clear(cp_docx_pw)], "The CP referral in a password-protected docx.")
    case("staff-payroll-password-xlsx", who(office), bureau, "November payroll (protected)",
         "Password as usual.\n", [clear(pay_pw)], "The payroll in a password-protected xlsx.")
    case("medical-needs-aes-zip", who(office), nurse, "Medical needs (zip)", "Password by phone.\n",
         [clear(med_aes)], "The medical needs list in an AES-256 ZIP.")
    case("medical-needs-password-pdf", who(office), nurse, "Medical needs (protected PDF)",
         "Password by phone.\n", [clear(med_pw)], "The medical needs PDF with a user password.")
    pgp_text = ("Concerns about " + cp_pupil.name + " (DOB " + cp_pupil.dob_uk + "): see the "
                "chronology.\nUPN " + cp_pupil.upn + ", section 47 strategy meeting 19/11/2026.\n")
    case("pgp-armoured-body", who(dsl), mash, "Chronology", "", [],
         "A body that is only an armoured, passphrase-encrypted PGP message; no attachment.",
         root=("pgp", protect.pgp_armour(pgp_text.encode(), work)))

    case("newsletter-docx", who(head), parent, "November newsletter", "Our newsletter is attached.\n",
         [clear(news_docx)], "A newsletter naming pupils for sport, with 'SENCO', 'pupil premium' "
         "and 'medical room' away from any name: harmless.")
    case("newsletter-pdf-rfc2231-name", who(head), parent, "November newsletter (PDF)",
         "PDF version for phones.\n",
         [Attach("Newsletter – café evening edition.pdf", news_pdf, name_style="rfc2231")],
         "The newsletter as PDF under a non-ASCII RFC 2231 name: harmless.")
    case("timetable-xlsx", who(tom), tutor, "7B timetable", "Timetable for your cover.\n",
         [clear(timetable)], "A timetable: harmless.")
    case("maths-worksheet-docx", "David Kowalczyk <d.kowalczyk@example-academy.sch.uk>", parent,
         "Homework", "This week's worksheet.\n", [clear(worksheet)],
         "A maths worksheet with 10-digit numbers that are not ULNs or NHS numbers, and dates: harmless.")
    case("photo-jpeg", who(tom), parent, "Sports day photo", "A lovely photo from sports day.\n",
         [clear(photo)], "A JPEG photo with EXIF: harmless.")
    case("trip-letter-pdf", who(head), trip_co, "Trip letter", "Our letter to parents, for your records.\n",
         [clear(trip)], "A trip letter: harmless.")

    for f, subject in [(bomb_zip, "Data"), (bomb_42, "Archive"),
                       (bomb_cycle, "Scanned list"), (bomb_flate, "Report"), (bomb_trunc, "Class list"),
                       (bomb_sheet, "Timetable")]:
        stem = f.path.rsplit("/", 1)[1].rsplit(".", 1)[0]
        a = clear(f)
        a.unscannable = True
        case(stem, who(tom), tutor, subject, "Attached.\n", [a], f.about + ": cannot be inspected.",
             where="bombs/")

    # ------------------------------------------------------------------------------------------
    # Write.
    if OUT.exists():
        for sub in ("files", "messages", "bombs"):
            shutil.rmtree(OUT / sub, ignore_errors=True)
    for sub in ("files", "messages", "bombs"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    (OUT / "directory.csv").write_text(directory_csv(pupils, staff))
    for f in files.values():
        (OUT / f.path).write_bytes(f.data)
    expect = {}
    emls = {}
    for i, c in enumerate(cases, start=1):
        raw = message(c, i)
        (OUT / c.path).write_bytes(raw)
        emls[c.path] = raw
        findings = []
        for a in c.attachments:
            if a.unscannable:
                findings.append({"rule": "unscannable-attachment", "attachment": a.name, "detectors": []})
            elif a.detectors:
                findings.append({"rule": "unencrypted-sensitive-attachment", "attachment": a.name,
                                 "detectors": a.detectors})
        expect[c.path] = {"verdict": "quarantine" if findings else "deliver", "findings": findings,
                          "about": c.about}
    (OUT / "expect.json").write_text(json.dumps(expect, indent=2, ensure_ascii=False) + "\n")
    (OUT / "README.md").write_text(readme(cases, expect))
    # Byte-exact: the messages are CRLF and must stay so whatever a checkout's settings are.
    (OUT / ".gitattributes").write_text("* -text -diff\n*.md text diff\n*.json text diff\n*.csv -text diff\n")

    verify.all_files(OUT, files, pupils, staff, cp_pupil, big_numbers, cert, key, emls, cases)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(files)} files, {len(cases)} messages, {total / 1e6:.1f} MB in {OUT}")


# ----------------------------------------------------------------------------------------------
# Messages.

BASE_DATE = 1795424400  # Mon, 23 Nov 2026 09:00:00 +0000


def message(c: Case, n: int, entity_only: bool = False) -> bytes:
    """A real MIME message, CRLF line endings (policy SMTP), fixed date, id and boundaries."""
    random.seed(f"boundary-{c.path}-{n}")  # email.generator draws boundaries from `random`
    msg = EmailMessage(policy=email.policy.SMTP)
    if not entity_only:
        msg["From"] = c.sender
        msg["To"] = c.to
        msg["Date"] = email.utils.format_datetime(
            datetime.datetime.fromtimestamp(BASE_DATE + 60 * n, datetime.timezone.utc))
        msg["Subject"] = c.subject
        stem = Path(c.path).stem or f"inner-{n}"
        msg["Message-ID"] = f"<{stem}.{n}@example-academy.sch.uk>"
    if c.root is not None:
        kind, data = c.root
        if kind == "smime":
            msg.set_content(data, maintype="application", subtype="pkcs7-mime",
                            params={"smime-type": "enveloped-data", "name": "smime.p7m"},
                            disposition="attachment", filename="smime.p7m")
        else:
            msg.set_content(data.decode("ascii"), subtype="plain", cte="7bit")
        return msg.as_bytes(policy=email.policy.SMTP)
    msg.set_content(c.body)
    placeholders = {}
    for k, a in enumerate(c.attachments):
        data = a.data if a.data is not None else a.file.data
        ext = a.name.rsplit(".", 1)[-1].lower()
        mime = a.mime or MIME[ext]
        maintype, subtype = mime.split("/")
        name = a.name
        if a.name_style == "encoded-word":
            name = f"attachment-{k}.bin"
            placeholders[name] = a.name
        if isinstance(data, EmailMessage):
            msg.add_attachment(data, subtype=subtype, disposition="attachment", filename=name)
        else:
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name,
                               params=a.params)
    raw = msg.as_bytes(policy=email.policy.SMTP)
    for placeholder, real in placeholders.items():
        word = "=?UTF-8?B?" + b64encode(real.encode()).decode() + "?="
        assert len(word) <= 75, word
        raw = raw.replace(f'filename="{placeholder}"'.encode(), f'filename="{word}"'.encode())
        assert word.encode() in raw
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    return raw


# ----------------------------------------------------------------------------------------------
# README.


def readme(cases, expect) -> str:
    def size(n):
        return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} B"

    lines = [
        "# Sensitive-attachment fixtures (issue 5)",
        "",
        "Made by `scripts/make-sensitive-fixtures` (which documents what it needs); committed, and only",
        "remade to change them. Every file is a real file of its format, made by the library or tool",
        "that makes that format (openpyxl, python-docx, python-pptx, fpdf2, pikepdf/qpdf, odfpy, xlwt,",
        "Pillow, msoffcrypto-tool, pyzipper, 7-Zip, openssl, gpg, Python's email package), and was read",
        "back by a second reader when it was made.",
        "",
        f"The school is made up. `directory.csv` is its directory (SPEC \"Directory\"): 10 staff of",
        "`example-academy.sch.uk` (headteacher, dsl, senco, office, staff) and 40 current pupils of",
        "`pupils.example-academy.sch.uk` born 2009–2019. Their UPNs (LA 801, establishment 4012; one",
        "temporary UPN) have valid check letters, ULNs and NHS numbers (from the never-issued 999 range)",
        "pass their check digits, and staff NI numbers have allocatable prefixes: the generator asserts",
        f"each against research/detectors.md. Year groups are for the school year of {TODAY:%d %B %Y}.",
        "",
        f"Password of every encrypted file: `{protect.PASSWORD}` (owner password of the PDFs:",
        f"`{protect.PASSWORD}-owner`).",
        "",
        "## expect.json",
        "",
        "For every `.eml` (path relative to this folder): `verdict` (`quarantine` | `deliver`),",
        "`findings` (rule, attachment name as the recipient sees it — decoded when the name is",
        "RFC 2231 or RFC 2047 — and the detectors that must at least fire; empty for",
        "`unscannable-attachment`), `about`. Verdicts assume the default `[sensitive]` thresholds and",
        "limits (depth 4, 256 MiB expanded, 10,000 entries, ratio 200, 10 s) and a directory of",
        "`directory.csv`, today 23 November 2026.",
        "",
        "Detector expectations that depend on the extractor: `date-of-birth` for `.xlsx`, `.xls`",
        "and `.ods` class lists requires date cells to be read as dates (they are real date cells",
        "formatted dd/mm/yyyy, as an MIS exports them; openpyxl writes inline strings, not a shared",
        "string table); `uln` and `nhs-number` on the CP referral have their keyword right before the",
        "number (\"ULN\", \"NHS number\": the cell beside it in the .docx table, \"ULN: …\" lines in",
        "the PDF). Thresholds that the harmless files must stay under: the newsletter names three",
        "pupils but its nearest school word (SENCO, pupil premium, medical, SATs) is more than 400",
        "characters from any name.",
        "",
        "## Attachments (`files/`) and bombs (`bombs/`)",
        "",
        "| file | size | what it is | holds |",
        "| --- | --- | --- | --- |",
    ]
    for f in files.values():
        lines.append(f"| `{f.path}` | {size(len(f.data))} | {f.about} | {f.holds} |")
    lines += ["", "## Messages", "",
              "Each from a member of staff to an outside address; multipart/mixed with a short text body and",
              "the attachment base64-encoded (CRLF line endings).", "",
              "| message | attachment | verdict | must find |", "| --- | --- | --- | --- |"]
    for c in cases:
        e = expect[c.path]
        names = ", ".join(f"`{a.name}`" for a in c.attachments) or "(none)"
        found = "; ".join(
            f"{x['rule']} on `{x['attachment']}`" + (f" ({', '.join(x['detectors'])})" if x["detectors"] else "")
            for x in e["findings"]) or "nothing"
        lines.append(f"| `{c.path}` | {names} | {e['verdict']} | {found} |")
    lines += ["", "Notes:", "",
              "- `files/class-list.p7m` is for a throwaway certificate whose key was not kept: nobody can",
              "  decrypt it, which is the point.",
              "- Encrypted files made by openssl, gpg, 7-Zip (ZipCrypto) and qpdf (the encrypted PDFs) change",
              "  on every run of the script (their own random keys); everything else is byte-for-byte",
              "  reproducible.",
              "- The bombs are small on disk: the 1 GiB ZIP is ~1 MB, the 42-style ZIP holds 256 TiB in",
              "  well under 1 MB, the Flate PDF ~1 MB.",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    build()
