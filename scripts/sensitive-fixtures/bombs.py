"""Files that must not be opened in full: decompression bombs, cycles and damage. Each is small
on disk; what it would expand to is stated in its docstring."""

import io
import zipfile
import zlib

from documents import ZIP_TIME

CHUNK = 16 << 20


def _info(name, compress=zipfile.ZIP_DEFLATED):
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.compress_type = compress
    info.external_attr = 0o644 << 16
    info.create_system = 3
    return info


def zeros_zip(name: str, size: int) -> bytes:
    """One deflated entry of `size` zero bytes (1 GiB → about 1 MB: deflate's ~1030:1 ceiling)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        with z.open(_info(name), "w") as w:
            left = size
            zero = bytes(CHUNK)
            while left:
                n = min(left, CHUNK)
                w.write(zero[:n])
                left -= n
    return out.getvalue()


def nested_zip(levels: int, fan: int, leaf_size: int) -> bytes:
    """42.zip's shape: `levels` ZIPs deep, `fan` copies of the level below in each, the innermost
    holding one file of `leaf_size` zeros. Expands to fan**(levels-1) × leaf_size."""
    inner = zeros_zip("0.bin", leaf_size)
    for level in range(levels - 1):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for i in range(fan):
                z.writestr(_info(f"{i:x}.zip"), inner, compresslevel=9)
        inner = out.getvalue()
    return inner


def many_entries_zip(count: int) -> bytes:
    """`count` empty stored entries with the shortest distinct names."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def name(i):
        s = ""
        while True:
            s = alphabet[i % len(alphabet)] + s
            i = i // len(alphabet) - 1
            if i < 0:
                return s

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for i in range(count):
            z.writestr(_info(name(i), zipfile.ZIP_STORED), b"")
    return out.getvalue()


def _pdf(objects) -> bytes:
    """A PDF from numbered object bodies (1..n), with an exact xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length " + str(len(data)).encode() + extra + b" >>\nstream\n" + data + b"\nendstream"


def cyclic_pages_pdf() -> bytes:
    """A page tree whose inner Pages node lists its own parent among its Kids: a reader that walks
    Kids without remembering where it has been never stops."""
    text = b"BT /F1 12 Tf 72 720 Td (Class list - page 1) Tj ET"
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 2 >>",
        b"<< /Type /Pages /Parent 2 0 R /Kids [4 0 R 2 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Contents 5 0 R "
        b"/Resources << /Font << /F1 6 0 R >> >> >>",
        _stream(text),
        FONT,
    ])


def flate_bomb_pdf(size: int) -> bytes:
    """One page whose content stream inflates to `size` zero bytes (NUL is white space in PDF
    syntax, so it is a valid, empty-looking page)."""
    c = zlib.compressobj(9)
    parts = []
    left = size
    zero = bytes(CHUNK)
    while left:
        n = min(left, CHUNK)
        parts.append(c.compress(zero[:n]))
        left -= n
    parts.append(c.flush())
    data = b"".join(parts)
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        _stream(data, b" /Filter /FlateDecode"),
        FONT,
    ])


def sheet_bomb_xlsx(real_xlsx: bytes, padding: int) -> bytes:
    """A real workbook whose first sheet's XML is padded with `padding` bytes of white space
    inside <sheetData>: well-formed XML, ~1000:1 in the ZIP."""
    src = zipfile.ZipFile(io.BytesIO(real_xlsx))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                head, sep, tail = body.partition(b"<sheetData>")
                assert sep
                with dst.open(_info(info.filename), "w") as w:
                    w.write(head + sep)
                    left = padding
                    blank = b" " * CHUNK
                    while left:
                        n = min(left, CHUNK)
                        w.write(blank[:n])
                        left -= n
                    w.write(tail)
            else:
                dst.writestr(_info(info.filename), body, compresslevel=9)
    return out.getvalue()


def truncated(data: bytes, keep: float) -> bytes:
    """The first `keep` of a file, as a failed upload or a full mailbox leaves it."""
    return data[: int(len(data) * keep)]
