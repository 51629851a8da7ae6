"""Encrypting the school's files the ways staff do it: password-protected Office files, AES and
ZipCrypto ZIPs, PDFs with a user (or only an owner) password, S/MIME enveloped data, PGP."""

import datetime
import io
import os
import random
import subprocess
import tempfile
import zipfile
from pathlib import Path

import msoffcrypto.method.container.ecma376_encrypted as ole_container
import msoffcrypto.method.ecma376_agile as agile
import pikepdf
import pyzipper
import pyzipper.zipfile_aes as zipfile_aes
from msoffcrypto.format.ooxml import OOXMLFile

from documents import DOC_TIME, ZIP_TIME

PASSWORD = "Fixture-pass-2026"


class _SeededBytes:
    """Stands in for the random sources of msoffcrypto and pyzipper while the fixtures are made,
    so a rerun writes the same salts and keys (these files protect nothing real)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def token_bytes(self, n):
        return self.rng.randbytes(n)

    def new(self):
        return self

    def read(self, n):
        return self.rng.randbytes(n)


class _FixedClock(datetime.datetime):
    """The OLE container's creation and modification times, fixed."""

    @classmethod
    def now(cls, tz=None):
        return DOC_TIME


def office_encrypt(data: bytes, seed: int) -> bytes:
    """Password-protected OOXML ([MS-OFFCRYPTO] agile encryption, as Office 2010+ writes it)."""
    saved = agile.secrets, ole_container.datetime
    agile.secrets = _SeededBytes(seed)
    ole_container.datetime = _FixedClock
    try:
        out = io.BytesIO()
        OOXMLFile(io.BytesIO(data)).encrypt(PASSWORD, out)
        return out.getvalue()
    finally:
        agile.secrets, ole_container.datetime = saved


def aes_zip(entries, seed: int) -> bytes:
    """WinZip AES-256 (method 99, extra 0x9901), as 7-Zip and WinZip write it."""
    saved = zipfile_aes.Random
    zipfile_aes.Random = _SeededBytes(seed)
    try:
        out = io.BytesIO()
        with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_DEFLATED,
                                 encryption=pyzipper.WZ_AES) as z:
            z.setpassword(PASSWORD.encode())
            z.setencryption(pyzipper.WZ_AES, nbits=256)
            for name, data in entries:
                info = z.zipinfo_cls(name, ZIP_TIME)
                info.compress_type = pyzipper.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, data)
        return out.getvalue()
    finally:
        zipfile_aes.Random = saved


def zipcrypto_zip(entries) -> bytes:
    """Traditional PKWARE encryption ("ZipCrypto"), made by 7-Zip as Windows users make it."""
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for name, data in entries:
            p = Path(tmp, name)
            p.write_bytes(data)
            t = 1795189500  # 2026-11-20 16:45 UTC
            os.utime(p, (t, t))
            names.append(name)
        subprocess.run(["7z", "a", "-tzip", "-mem=ZipCrypto", f"-p{PASSWORD}", "-bd", "-bso0",
                        "out.zip", *names], cwd=tmp, check=True)
        return Path(tmp, "out.zip").read_bytes()


def pdf_encrypt(data: bytes, user_password: str) -> bytes:
    """AES-256 (R6) PDF encryption by qpdf. With an empty user password the file opens without
    asking (an owner-password-only PDF: printing and copying "restricted", nothing secret)."""
    pdf = pikepdf.open(io.BytesIO(data))
    out = io.BytesIO()
    perms = pikepdf.Permissions(extract=False, modify_other=False, modify_annotation=False,
                                modify_assembly=False, modify_form=False, print_highres=False)
    pdf.save(out, encryption=pikepdf.Encryption(user=user_password, owner=PASSWORD + "-owner",
                                                R=6, allow=perms))
    return out.getvalue()


def cms_envelope(data: bytes, work: Path):
    """S/MIME enveloped data (CMS, RFC 5652) for a throwaway self-signed certificate: returns
    (DER bytes, certificate path, key path). The key stays in `work` (a temporary folder)."""
    key, cert = work / "recipient.key", work / "recipient.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                        "-subj", "/CN=Recipient Example/emailAddress=safeguarding@county.gov.example",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    src = work / "plain.bin"
    src.write_bytes(data)
    der = subprocess.run(["openssl", "cms", "-encrypt", "-binary", "-aes256", "-outform", "DER",
                          "-in", str(src), str(cert)], check=True, capture_output=True).stdout
    return der, cert, key


def pgp_armour(text: bytes, work: Path) -> bytes:
    """An armoured OpenPGP message encrypted with a passphrase (gpg --symmetric: an SKESK packet,
    tag 3, then SEIPD data)."""
    home = work / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    try:
        return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode",
                               "loopback", "--passphrase", PASSWORD, "--symmetric", "--armor",
                               "--cipher-algo", "AES256"], input=text, check=True,
                              capture_output=True).stdout
    finally:
        stop_gpg_agent(home)


def stop_gpg_agent(home: Path):
    """gpg starts an agent for its home folder: stop it before the folder goes."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def is_zipcrypto(data: bytes) -> bool:
    z = zipfile.ZipFile(io.BytesIO(data))
    return all(i.flag_bits & 1 and i.compress_type != 99 for i in z.infolist())
