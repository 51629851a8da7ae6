"""Reads every fixture back, with a different reader from the one that wrote it where there is
one (poppler's pdftotext and qpdf for PDFs, 7-Zip and Info-ZIP for ZIPs, xlrd for .xls, raw XML
for OOXML and ODF, olefile for encrypted Office files, openssl and gpg for S/MIME and PGP), and
checks that the encrypted ones really need the password and the owner-only PDF does not."""

import base64
import csv
import html
import io
import re
import subprocess
import tempfile
import zipfile
import zlib
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import msoffcrypto
import olefile
import openpyxl
import xlrd
from pdfminer.high_level import extract_text
from PIL import Image
from striprtf.striprtf import rtf_to_text

import protect
from people import nhs_valid, ni_valid, uln_valid, upn_valid

PW = protect.PASSWORD
checks = []


def ok(what: str, cond: bool):
    if not cond:
        raise AssertionError(f"check failed: {what}")
    checks.append(what)


def run(*args, input=None, check=True):
    return subprocess.run(list(args), input=input, capture_output=True, check=check)


def zip_xml(data: bytes, *names) -> str:
    z = zipfile.ZipFile(io.BytesIO(data))
    return html.unescape("".join(z.read(n).decode("utf-8") for n in names))


def pdftotext(path: Path, password=None) -> str:
    args = ["pdftotext", "-layout"]
    if password:
        args += ["-upw", password]
    r = run(*args, str(path), "-", check=False)
    return r.stdout.decode("utf-8", "replace") if r.returncode == 0 else None


def requires_password(path: Path) -> int:
    """qpdf --requires-password: 0 needs one, 2 not encrypted, 3 encrypted but opens without."""
    return run("qpdf", "--requires-password", str(path), check=False).returncode


def seven_zip_methods(path: Path) -> list:
    out = run("7z", "l", "-slt", str(path)).stdout.decode()
    return re.findall(r"^Method = (.*)$", out, re.M)


def all_files(out: Path, files, pupils, staff, cp_pupil, big_numbers, cert, key, emls, cases):
    cl = sorted(pupils[:30], key=lambda p: (p.surname, p.first))
    upns = [p.upn for p in cl]
    ok("30 valid UPNs in the class list", len(set(upns)) == 30 and all(upn_valid(u) for u in upns))
    ok("staff NI numbers valid", all(ni_valid(s.ni) for s in staff))
    ok("pupil ULNs valid, NHS numbers valid",
       all(uln_valid(p.uln) and nhs_valid(p.nhs) for p in pupils))
    ok("worksheet numbers are neither ULN nor NHS",
       all(not uln_valid(n) and not nhs_valid(n) for n in big_numbers))
    P = lambda rel: out / rel  # noqa: E731
    data = lambda rel: files[rel].data  # noqa: E731

    # Directory.
    rows = list(csv.DictReader(io.StringIO(P("directory.csv").read_text())))
    ok("directory: 40 pupils, 10 staff", sum(r["role"] == "pupil" for r in rows) == 40 and len(rows) == 50)
    ok("directory roles", {"headteacher", "dsl", "senco"} <= {r["role"] for r in rows})

    # Class list in every clear form.
    xml = zip_xml(data("files/class-list.xlsx"), "xl/worksheets/sheet1.xml")
    ok("class-list.xlsx: UPNs in sheet1.xml (inline strings)", all(u in xml for u in upns))
    wb = openpyxl.load_workbook(P("files/class-list.xlsx"))
    dobs = [r[2] for r in wb.active.iter_rows(min_row=2)]
    ok("class-list.xlsx: DOBs are date cells", all(c.is_date and c.number_format == "DD/MM/YYYY" for c in dobs))
    ok("class-list.xlsx: 7z lists it", "xl/worksheets/sheet1.xml" in run("7z", "l", str(P("files/class-list.xlsx"))).stdout.decode())
    text = P("files/class-list.csv").read_bytes()
    ok("class-list.csv: BOM, UPNs, dd/mm/yyyy", text.startswith(b"\xef\xbb\xbf")
       and all(u.encode() in text for u in upns) and cl[0].dob_uk.encode() in text)
    book = xlrd.open_workbook(file_contents=data("files/class-list.xls"))
    sh = book.sheet_by_index(0)
    ok("class-list.xls: xlrd reads 30 rows, UPNs, date cells",
       sh.nrows == 31 and [sh.cell_value(r, 1) for r in range(1, 31)] == upns
       and all(sh.cell_type(r, 2) == xlrd.XL_CELL_DATE for r in range(1, 31)))
    for ext in ("ods", "odt"):
        d = data(f"files/class-list.{ext}")
        z = zipfile.ZipFile(io.BytesIO(d))
        first = z.infolist()[0]
        ok(f"class-list.{ext}: mimetype first and stored",
           first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED)
        content = z.read("content.xml").decode()
        ok(f"class-list.{ext}: UPNs and names in content.xml",
           all(u in content for u in upns) and cl[0].name in content)
    ok("class-list.ods: DOBs are date cells",
       f'office:date-value="{cl[0].dob.isoformat()}"' in zip_xml(data("files/class-list.ods"), "content.xml"))
    owner = P("files/class-list-owner-password.pdf")
    ok("owner-only PDF: encrypted but opens without a password (qpdf exit 3)", requires_password(owner) == 3)
    ok("owner-only PDF: /Encrypt in the trailer", b"/Encrypt" in owner.read_bytes())
    t = pdftotext(owner)
    ok("owner-only PDF: pdftotext reads the UPNs without a password", t is not None and all(u in t for u in upns))
    run("qpdf", "--check", str(owner))
    outer = zipfile.ZipFile(P("files/class-list-nested.zip"))
    inner = zipfile.ZipFile(io.BytesIO(outer.read("Year groups/class-lists.zip")))
    ok("class-list-nested.zip: zip › zip › csv, in clear",
       inner.read("class-list.csv") == data("files/class-list.csv")
       and not any(i.flag_bits & 1 for i in outer.infolist() + inner.infolist()))
    ok("class-list-nested.zip: unzip -l lists the inner zip",
       b"class-lists.zip" in run("unzip", "-l", str(P("files/class-list-nested.zip"))).stdout)

    # Password-protected Office files.
    for rel, original in [("files/class-list-password.xlsx", "files/class-list.xlsx"),
                          ("files/cp-referral-password.docx", "files/cp-referral.docx"),
                          ("files/staff-payroll-password.xlsx", "files/staff-payroll.xlsx")]:
        d = data(rel)
        ole = olefile.OleFileIO(io.BytesIO(d))
        info = ole.openstream("EncryptionInfo").read(4)
        ok(f"{rel}: OLE with EncryptionInfo (agile 4.4) and EncryptedPackage",
           ole.exists("EncryptedPackage") and info == b"\x04\x00\x04\x00" and not zipfile.is_zipfile(io.BytesIO(d)))
        f = msoffcrypto.OfficeFile(io.BytesIO(d))
        plain = io.BytesIO()
        f.load_key(password=PW)
        f.decrypt(plain)
        ok(f"{rel}: decrypts with the password to the original", plain.getvalue() == data(original))
        bad = msoffcrypto.OfficeFile(io.BytesIO(d))
        try:
            bad.load_key(password="wrong")
            bad.decrypt(io.BytesIO())
            ok(f"{rel}: a wrong password fails", False)
        except Exception:
            ok(f"{rel}: a wrong password fails", True)

    # AES ZIPs.
    for rel, entry, original in [("files/class-list-aes256.zip", "class-list.xlsx", "files/class-list.xlsx"),
                                 ("files/sen-register-aes256.zip", "sen-register.xlsx", "files/sen-register.xlsx"),
                                 ("files/medical-needs-aes256.zip", "medical-needs.docx", "files/medical-needs.docx")]:
        ok(f"{rel}: 7z says AES-256", seven_zip_methods(P(rel)) == ["AES-256 Deflate"])
        z = zipfile.ZipFile(P(rel))
        ok(f"{rel}: encrypted flag, method 99", all(i.flag_bits & 1 and i.compress_type == 99 for i in z.infolist()))
        ok(f"{rel}: 7z extracts with the password",
           run("7z", "e", "-so", f"-p{PW}", str(P(rel)), entry).stdout == data(original))
        ok(f"{rel}: 7z fails with a wrong password",
           run("7z", "e", "-so", "-pwrong", str(P(rel)), entry, check=False).returncode != 0)
    rel = "files/sen-register-zipcrypto.zip"
    ok(f"{rel}: ZipCrypto (flag bit 0, not AES)", protect.is_zipcrypto(data(rel))
       and seven_zip_methods(P(rel)) == ["ZipCrypto Deflate"])
    ok(f"{rel}: unzip -P extracts", run("unzip", "-P", PW, "-p", str(P(rel)), "sen-register.csv").stdout
       == data("files/sen-register.csv"))
    try:
        zipfile.ZipFile(P(rel)).read("sen-register.csv")
        ok(f"{rel}: needs a password", False)
    except RuntimeError:
        ok(f"{rel}: needs a password (Python zipfile refuses)", True)

    # S/MIME.
    p7m = P("files/class-list.p7m")
    ok("class-list.p7m: envelopedData OID", bytes.fromhex("06092A864886F70D010703") in p7m.read_bytes())
    ok("class-list.p7m: openssl decrypts with the throwaway key",
       run("openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(p7m), "-recip", str(cert),
           "-inkey", str(key)).stdout == data("files/class-list.csv"))

    # SEN register.
    sen_names = [r[0] for r in _table_rows(data("files/sen-register.csv"))]
    ok("sen-register: 12 pupils", len(sen_names) == 12)
    xml = zip_xml(data("files/sen-register.xlsx"), "xl/worksheets/sheet1.xml")
    ok("sen-register.xlsx: names, EHCP, SEMH", all(_xml_text(n) in xml for n in sen_names) and "EHCP" in xml and "SEMH" in xml)
    xml = zip_xml(data("files/sen-register.pptx"), "ppt/slides/slide1.xml")
    ok("sen-register.pptx: names, EHCP in the slide", all(_xml_text(n) in xml for n in sen_names) and "EHCP" in xml)
    rtf = rtf_to_text(data("files/sen-register.rtf").decode("ascii"))
    ok("sen-register.rtf: striprtf reads names and needs", all(n in rtf for n in sen_names) and "SEN support" in rtf)
    ok("sen-register.rtf: 7z/file sees RTF", run("file", "-b", str(P("files/sen-register.rtf"))).stdout.startswith(b"Rich Text"))

    # CP referral.
    must = [cp_pupil.name, cp_pupil.upn, cp_pupil.uln, cp_pupil.nhs, cp_pupil.dob_uk, "section 47",
            "strategy meeting", "neglect", "OFFICIAL-SENSITIVE", "DSL"]
    xml = zip_xml(data("files/cp-referral.docx"), "word/document.xml")
    ok("cp-referral.docx: every field in document.xml", all(_xml_text(m) in xml for m in must))
    for rel in ("files/cp-referral.pdf",):
        t = pdftotext(P(rel))
        ok(f"{rel}: pdftotext reads every field", t is not None and all(m in t for m in must))
        t2 = extract_text(str(P(rel)))
        ok(f"{rel}: pdfminer reads every field", all(m in t2 for m in must))
        run("qpdf", "--check", str(P(rel)))
    for rel, clear in [("files/cp-referral-password.pdf", cp_pupil.upn),
                       ("files/medical-needs-password.pdf", "EpiPen")]:
        ok(f"{rel}: qpdf says a password is required", requires_password(P(rel)) == 0)
        ok(f"{rel}: pdftotext fails without the password", pdftotext(P(rel)) is None)
        t = pdftotext(P(rel), PW)
        ok(f"{rel}: opens with the password", t is not None and clear in t)

    # Payroll.
    xml = zip_xml(data("files/staff-payroll.xlsx"), "xl/worksheets/sheet1.xml")
    ok("staff-payroll.xlsx: 10 NI numbers", all(s.ni in xml for s in staff))

    # Medical needs.
    med = _table_rows(doc_table_csv(data("files/medical-needs.docx")))
    ok("medical-needs.docx: 10 pupils with DOBs", len(med) == 10 and all(re.fullmatch(r"\d\d/\d\d/\d{4}", r[2]) for r in med))
    t = pdftotext(P("files/medical-needs.pdf"))
    ok("medical-needs.pdf: names, EpiPen, diabetes, epilepsy",
       t is not None and all(_latin(r[0]) in t for r in med) and "EpiPen" in t and "diabetes" in t and "Epilepsy" in t)

    ok("official-sensitive-note.docx: the marking",
       "OFFICIAL-SENSITIVE [PERSONAL]" in zip_xml(data("files/official-sensitive-note.docx"), "word/document.xml"))

    # Harmless documents.
    xml = zip_xml(data("files/newsletter.docx"), "word/document.xml")
    plain = re.sub(r"<[^>]+>", " ", xml)
    named = [p.name for p in pupils if p.name in plain]
    ok("newsletter.docx: names 3 pupils", len(named) == 3)
    words = ["SENCO", "pupil premium", "medical", "SATs"]
    ok("newsletter.docx: SENCO, pupil premium, medical room, SATs", all(w in plain for w in words))
    far = min(abs(m.start() - n.start()) for w in words for m in re.finditer(re.escape(w), plain)
              for p in named for n in re.finditer(re.escape(p), plain))
    ok(f"newsletter.docx: no school word within 400 characters of a pupil's name (nearest {far})", far > 400)
    t = pdftotext(P("files/newsletter.pdf"))
    ok("newsletter.pdf: pdftotext reads it", t is not None and "SENCO" in t and "pupil premium" in t)
    ok("timetable.xlsx: periods and rooms", "Sports hall" in zip_xml(data("files/timetable.xlsx"), "xl/worksheets/sheet1.xml"))
    xml = zip_xml(data("files/maths-worksheet.docx"), "word/document.xml")
    ok("maths-worksheet.docx: the 10-digit numbers are in it", all(n in xml for n in big_numbers))
    img = Image.open(P("files/sports-day.jpg"))
    ok("sports-day.jpg: a JPEG with EXIF DateTimeOriginal",
       img.format == "JPEG" and img.getexif().get_ifd(0x8769).get(0x9003) == "2026:07:10 11:32:05")
    t = pdftotext(P("files/trip-letter.pdf"))
    ok("trip-letter.pdf: pdftotext reads it", t is not None and "Natural History Museum" in t)

    # Bombs.
    rel = "bombs/zip-1gib-zeros.zip"
    z = zipfile.ZipFile(P(rel))
    (i,) = z.infolist()
    ok(f"{rel}: one entry of 1 GiB, ~1 MB compressed", i.file_size == 1 << 30 and i.compress_size < 1_100_000)
    ok(f"{rel}: unzip -l agrees", b"1073741824" in run("unzip", "-l", str(P(rel))).stdout)
    ok(f"{rel}: inflates to zeros (first 16 MiB)", z.open(i).read(16 << 20) == bytes(16 << 20))
    rel = "bombs/zip-nested-42.zip"
    d, depth = data(rel), 0
    while True:
        z = zipfile.ZipFile(io.BytesIO(d))
        depth += 1
        names = z.namelist()
        if names == ["0.bin"]:
            leaf = z.infolist()[0]
            break
        ok(f"{rel}: 16 entries at level {depth}", len(names) == 16 and all(n.endswith(".zip") for n in names))
        d = z.read(names[0])
    ok(f"{rel}: 6 levels, leaf 256 MiB, file under 1 MB",
       depth == 6 and leaf.file_size == 256 << 20 and len(data(rel)) < 1_000_000)
    for rel in ("bombs/pdf-cyclic-pages.pdf", "bombs/pdf-flate-bomb.pdf"):
        _check_xref(P(rel).read_bytes(), rel)
    r = run("qpdf", "--check", str(P("bombs/pdf-cyclic-pages.pdf")), check=False)
    msg = (r.stdout + r.stderr).decode()
    ok(f"pdf-cyclic-pages.pdf: qpdf finds the loop ({msg.strip().splitlines()[-1]!r})",
       r.returncode != 0 and "loop" in msg.lower())
    raw = P("bombs/pdf-flate-bomb.pdf").read_bytes()
    start = raw.index(b"stream\n") + 7
    end = raw.index(b"\nendstream")
    dz, n = zlib.decompressobj(), 0
    chunk = raw[start:end]
    for k in range(0, len(chunk), 1 << 16):
        n += len(dz.decompress(chunk[k:k + (1 << 16)]))
    n += len(dz.flush())
    ok(f"pdf-flate-bomb.pdf: the content stream inflates to 1 GiB ({len(chunk)} bytes compressed)",
       n == 1 << 30 and dz.eof)
    r = run("qpdf", "--check", str(P("bombs/pdf-flate-bomb.pdf")), check=False)
    ok("pdf-flate-bomb.pdf: qpdf --check finds no syntax error", r.returncode == 0)
    rel = "bombs/xlsx-truncated.xlsx"
    try:
        zipfile.ZipFile(P(rel))
        ok(f"{rel}: not a readable ZIP", False)
    except zipfile.BadZipFile:
        ok(f"{rel}: not a readable ZIP (Python zipfile)", True)
    ok(f"{rel}: unzip fails", run("unzip", "-l", str(P(rel)), check=False).returncode != 0)
    rel = "bombs/xlsx-sheet-bomb.xlsx"
    z = zipfile.ZipFile(P(rel))
    i = z.getinfo("xl/worksheets/sheet1.xml")
    ok(f"{rel}: sheet1.xml expands {i.file_size // i.compress_size}:1 to {i.file_size >> 20} MiB",
       i.file_size > 64 << 20 and i.file_size // i.compress_size > 200)
    with z.open(i) as f:
        head = f.read(4096)
    ok(f"{rel}: sheet1.xml starts as a worksheet", b"<worksheet" in head and b"<sheetData>" in head)

    # Messages.
    for c in cases:
        _check_message(c, emls[c.path], out, cert, key)
    print(f"verified: {len(checks)} checks passed")
    for what in checks:
        print("  ok", what)


def _xml_text(s: str) -> str:
    return s  # zip_xml unescapes


def _latin(s: str) -> str:
    return s.replace("–", "-").replace("’", "'")


def _table_rows(csv_bytes: bytes):
    rows = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8-sig"))))
    return rows[1:]


def doc_table_csv(docx_bytes: bytes) -> bytes:
    """The first table of a .docx as CSV, read from document.xml (not through python-docx)."""
    xml = zip_xml(docx_bytes, "word/document.xml")
    table = xml[xml.index("<w:tbl>"):xml.index("</w:tbl>")]
    out = io.StringIO()
    w = csv.writer(out)
    for row in re.findall(r"<w:tr[ >].*?</w:tr>", table, re.S):
        cells = re.findall(r"<w:tc>.*?</w:tc>", row, re.S)
        w.writerow(["".join(re.findall(r"<w:t[^>]*>([^<]*)</w:t>", c)) for c in cells])
    return out.getvalue().encode()


def _check_xref(raw: bytes, rel: str):
    start = int(raw.rsplit(b"startxref", 1)[1].split()[0])
    ok(f"{rel}: startxref points at the xref", raw[start:start + 4] == b"xref")
    lines = raw[start:].split(b"\n")
    count = int(lines[1].split()[1])
    for n in range(1, count):
        off = int(lines[2 + n].split()[0])
        ok(f"{rel}: xref entry {n} points at its object", raw[off:].startswith(f"{n} 0 obj".encode()))


def _check_message(c, raw: bytes, out: Path, cert, key):
    ok(f"{c.path}: CRLF only", b"\n" not in raw.replace(b"\r\n", b"") and raw.endswith(b"\r\n"))
    m = message_from_bytes(raw, policy=default_policy)
    ok(f"{c.path}: headers", all(m[h] for h in ("From", "To", "Date", "Subject", "Message-ID")))
    ok(f"{c.path}: from a member of staff to outside",
       "@example-academy.sch.uk" in m["From"] and "example-academy" not in m["To"])
    if c.root is not None:
        kind, _ = c.root
        if kind == "smime":
            ok(f"{c.path}: application/pkcs7-mime enveloped-data at the root",
               m.get_content_type() == "application/pkcs7-mime"
               and m.get_param("smime-type") == "enveloped-data")
            with tempfile.NamedTemporaryFile() as t:
                t.write(m.get_content())
                t.flush()
                inner = run("openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", t.name,
                            "-recip", str(cert), "-inkey", str(key)).stdout
            im = message_from_bytes(inner, policy=default_policy)
            names = [p.get_filename() for p in im.iter_attachments()]
            ok(f"{c.path}: openssl decrypts it to a message carrying class-list.csv", names == ["class-list.csv"])
        else:
            body = m.get_content()
            armour = body.split("-----BEGIN PGP MESSAGE-----")[1].split("-----END PGP MESSAGE-----")[0]
            b64 = "".join(l for l in armour.strip().splitlines()[1:] if l and not l.startswith("="))
            if not armour.strip().splitlines()[0].strip() == "":
                b64 = "".join(l for l in armour.strip().splitlines() if l and ":" not in l and not l.startswith("="))
            first = base64.b64decode(b64)[0]
            tag = first & 0x3F if first & 0x40 else (first >> 2) & 0x0F
            ok(f"{c.path}: armoured PGP whose first packet is tag {tag} (encrypted)", first & 0x80 and tag in (1, 3, 9, 18, 20))
            with tempfile.TemporaryDirectory() as home:
                plain = run("gpg", "--homedir", home, "--batch", "--quiet", "--pinentry-mode", "loopback",
                            "--passphrase", PW, "--decrypt", input=body.encode()).stdout
                protect.stop_gpg_agent(Path(home))
            ok(f"{c.path}: gpg decrypts it with the passphrase", b"section 47" in plain)
        return
    ok(f"{c.path}: multipart/mixed", m.get_content_type() == "multipart/mixed")
    parts = list(m.iter_attachments())
    ok(f"{c.path}: {len(c.attachments)} attachment(s) named as sent",
       [p.get_filename() for p in parts] == [a.name for a in c.attachments])
    for p, a in zip(parts, c.attachments):
        if p.get_content_type() == "message/rfc822":
            inner = p.get_content()
            ok(f"{c.path}: the forwarded message carries an attachment",
               len(list(inner.iter_attachments())) == 1)
            if a.file is not None:
                inner_file = message_from_bytes(a.file.data, policy=default_policy)
                ok(f"{c.path}: the attached .eml's attachment is unchanged",
                   next(inner.iter_attachments()).get_content() == next(inner_file.iter_attachments()).get_content())
            continue
        ok(f"{c.path}: {a.name} base64, bytes as made",
           p["Content-Transfer-Encoding"] == "base64" and p.get_payload(decode=True) == a.file.data)
        ok(f"{c.path}: {a.name} as Content-Disposition filename",
           p.get_content_disposition() == "attachment")
    if any(a.name_style == "rfc2231" for a in c.attachments):
        ok(f"{c.path}: RFC 2231 filename* (with continuations when long)",
           re.search(rb"filename\*(0\*)?=utf-8''", raw) is not None)
    if any(a.name_style == "encoded-word" for a in c.attachments):
        ok(f"{c.path}: RFC 2047 encoded-word filename", b'filename="=?UTF-8?B?' in raw)
