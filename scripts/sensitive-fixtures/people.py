"""The made-up school: its people, their identifiers, and the checks those identifiers must pass.

Everything is derived from a seeded random generator, so a rerun writes the same people. The
checks are the algorithms of /work/shared/research/detectors.md (DfE UPN guide Annex A, LRS ULN
validation, NHS Data Dictionary, HMRC NIM39110), asserted against the worked examples there.
"""

import datetime as dt
import random
import re
import unicodedata
from dataclasses import dataclass

SCHOOL = "Example Academy"
STAFF_DOMAIN = "example-academy.sch.uk"
PUPIL_DOMAIN = "pupils.example-academy.sch.uk"
# The day the fixtures are "sent": years and ages are worked out for the 2026/27 school year.
TODAY = dt.date(2026, 11, 23)
OFFICE_PHONE = "0161 496 0000"  # Ofcom's drama range for Manchester numbers

# ----------------------------------------------------------------------------------------------
# Identifier checks.

UPN_TABLE = "ABCDEFGHJKLMNPQRTUVWXYZ"
UPN_SHAPE = re.compile(r"^[A-HJ-NP-RT-Z]\d{11}[0-9A-HJ-NP-RT-Z]$")


def upn_check_letter(body12: str) -> str:
    """The check letter for the 12 characters after it (positions 2..13)."""
    s = 0
    for pos, c in enumerate(body12, start=2):
        s += (int(c) if c.isdigit() else UPN_TABLE.index(c)) * pos
    return UPN_TABLE[s % 23]


def upn_valid(upn: str) -> bool:
    return bool(UPN_SHAPE.match(upn)) and upn_check_letter(upn[1:]) == upn[0]


def _weighted(digits: str) -> int:
    return sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))


def uln_valid(n: str) -> bool:
    if not re.fullmatch(r"\d{10}", n):
        return False
    r = _weighted(n) % 11
    return r != 0 and int(n[9]) == 10 - r


def nhs_valid(n: str) -> bool:
    n = n.replace(" ", "")
    if not re.fullmatch(r"\d{10}", n) or len(set(n)) == 1:
        return False
    c = 11 - _weighted(n) % 11
    if c == 11:
        c = 0
    return c != 10 and c == int(n[9])


NI_FIRST = "ABCEGHJKLMNOPRSTWXYZ"  # never D F I Q U V
NI_SECOND = "ABCEGHJKLMNPRSTWXYZ"  # never D F I O Q U V
NI_NEVER = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
NI_SHAPE = re.compile(
    r"^([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])\s?\d\d\s?\d\d\s?\d\d\s?[A-D]$", re.IGNORECASE
)


def ni_valid(ni: str) -> bool:
    m = NI_SHAPE.match(ni)
    return bool(m) and m.group(1).upper() not in NI_NEVER


def _self_test() -> None:
    """The worked examples of detectors.md: if these fail, the checks above are wrong."""
    for ok in ["H801200001001", "X00180001701A", "B801200005001"]:
        assert upn_valid(ok), ok
    for bad in ["A801200005001", "X00180001701B", "I801200001001"]:
        assert not upn_valid(bad), bad
    for ok in ["1234567899", "0000000042", "1000000000"]:
        assert uln_valid(ok), ok
    for bad in ["1234567890", "9999999999"]:
        assert not uln_valid(bad), bad
    for ok in ["943 476 5919", "401 023 2137", "999 000 0018"]:
        assert nhs_valid(ok), ok
    for bad in ["9434765918", "9876544321", "0000000000"]:
        assert not nhs_valid(bad), bad
    for ok in ["AB123456C", "CE123456D", "AB 12 34 56 C", "ab123456c"]:
        assert ni_valid(ok), ok
    for bad in ["QQ123456A", "BG123456A", "GB123456A", "NK123456A", "TN123456A", "ZZ123456A",
                "AO123456A", "AB123456E"]:
        assert not ni_valid(bad), bad


_self_test()

# ----------------------------------------------------------------------------------------------
# People.

PUPIL_NAMES = [
    "Amelia Clarke", "Oliver Bennett", "Aisha Khan", "Mohammed Hussain", "Zoë Thompson",
    "Kwame Mensah", "Wiktoria Nowak", "Harry Evans", "Priya Patel", "Lily-Mae Robinson",
    "Oluwaseun Adeyemi", "Wei Liu", "Freya MacDonald", "Rhys Llewellyn", "Siân Griffiths",
    "Yusuf Ahmed", "Isla Campbell", "Dylan O'Connor", "Amara Okafor", "Noah Williams",
    "Hania Kowalska", "Arjun Sharma", "Grace Walker", "Leo Rossi", "Fatima Begum",
    "Tomasz Zielinski", "Ella Murphy", "Jayden Campbell-Brown", "Maryam Ali", "Ethan Hughes",
    "Chloé Dubois", "Reuben Cohen", "Sofia Costa", "Kai Nakamura", "Ruby Fletcher",
    "Ibrahim Yilmaz", "Niamh Doherty", "Alfie Turner", "Mei Chen", "Samuel Osei",
]

# (role, name, title, school e-mail local part)
STAFF = [
    ("headteacher", "Margaret Hughes", "Mrs", "head"),
    ("dsl", "Priya Shah", "Ms", "dsl"),
    ("senco", "Helen Okonkwo", "Mrs", "senco"),
    ("office", "Janet Price", "Mrs", "office"),
    ("staff", "Tom Baker", "Mr", "t.baker"),
    ("staff", "David Kowalczyk", "Mr", "d.kowalczyk"),
    ("staff", "Sarah Whitfield", "Miss", "s.whitfield"),
    ("staff", "Gareth Jones", "Mr", "g.jones"),
    ("staff", "Anita Desai", "Dr", "a.desai"),
    ("staff", "Michael O'Brien", "Mr", "m.obrien"),
]


def ascii_fold(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()


@dataclass
class Pupil:
    name: str
    email: str
    dob: dt.date
    year: int  # National Curriculum year in 2026/27
    form: str
    upn: str
    uln: str
    nhs: str
    personal_email: str = ""
    personal_phone: str = ""

    @property
    def first(self) -> str:
        return self.name.split(" ")[0]

    @property
    def surname(self) -> str:
        return self.name.split(" ", 1)[1]

    @property
    def dob_uk(self) -> str:
        return self.dob.strftime("%d/%m/%Y")


@dataclass
class Staff:
    role: str
    name: str
    title: str
    email: str
    ni: str
    salary: int
    sort_code: str
    account: str

    @property
    def formal(self) -> str:
        return f"{self.title} {self.name.split(' ', 1)[1]}"


def _school_year(dob: dt.date) -> int:
    """Year group in September 2026: a child born 1 Sep Y .. 31 Aug Y+1 started Reception in Y+5."""
    cohort = dob.year if dob.month >= 9 else dob.year - 1
    return 2026 - 5 - cohort


def _make_upn(rng: random.Random, entry_year: int, serial: int, temporary: bool) -> str:
    # LA 801, establishment 4012, year of allocation, serial (a temporary UPN: 2-digit serial
    # and a letter).
    if temporary:
        body = f"8014012{entry_year % 100:02d}{serial % 100:02d}{rng.choice(UPN_TABLE)}"
    else:
        body = f"8014012{entry_year % 100:02d}{serial:03d}"
    upn = upn_check_letter(body) + body
    assert upn_valid(upn), upn
    return upn


def _make_uln(rng: random.Random) -> str:
    while True:
        d = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(8))
        r = _weighted(d) % 11
        if r == 0:
            continue
        uln = d + str(10 - r)
        if uln_valid(uln) and not nhs_valid(uln):
            return uln


def _make_nhs(rng: random.Random) -> str:
    """From the range never issued (999 000 0000–999 999 9999)."""
    while True:
        d = "999" + "".join(str(rng.randint(0, 9)) for _ in range(6))
        c = 11 - _weighted(d) % 11
        c = 0 if c == 11 else c
        if c == 10:
            continue
        n = d + str(c)
        if nhs_valid(n):
            return f"{n[:3]} {n[3:6]} {n[6:]}"


def _make_ni(rng: random.Random) -> str:
    while True:
        prefix = rng.choice(NI_FIRST) + rng.choice(NI_SECOND)
        if prefix in NI_NEVER:
            continue
        digits = f"{rng.randint(0, 999999):06d}"
        ni = f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {rng.choice('ABCD')}"
        assert ni_valid(ni), ni
        return ni


def make_people():
    rng = random.Random(5)  # issue 5
    pupils = []
    used = set()
    start, end = dt.date(2009, 9, 1), dt.date(2019, 8, 31)
    for i, name in enumerate(PUPIL_NAMES, start=1):
        dob = start + dt.timedelta(days=rng.randint(0, (end - start).days))
        year = _school_year(dob)
        first, surname = name.split(" ", 1)
        local = ascii_fold(f"{first[0]}.{surname}").lower().replace("'", "").replace("-", "")
        assert local not in used, local
        used.add(local)
        entry_year = 2026 - year  # the September they started Reception
        pupils.append(Pupil(
            name=name,
            email=f"{local}@{PUPIL_DOMAIN}",
            dob=dob,
            year=year,
            form=f"{year}{rng.choice('BKW')}",
            upn=_make_upn(rng, entry_year, i, temporary=(i == 17)),
            uln=_make_uln(rng),
            nhs=_make_nhs(rng),
        ))
    # A few pupils whose personal contact details the school holds.
    pupils[3].personal_email = "mo.hussain2012@gmail.com"
    pupils[9].personal_phone = "07700 900417"
    pupils[19].personal_email = "noahw.football@outlook.com"
    pupils[19].personal_phone = "07700 900582"
    assert len(pupils) == 40 and all(1 <= p.year <= 13 for p in pupils)
    assert len({p.upn for p in pupils}) == 40
    staff = []
    for role, name, title, local in STAFF:
        staff.append(Staff(
            role=role, name=name, title=title, email=f"{local}@{STAFF_DOMAIN}",
            ni=_make_ni(rng),
            salary=rng.randrange(24000, 62000, 250) if role != "headteacher" else 88750,
            sort_code=f"{rng.choice([20, 30, 40, 60, 77, 83])}-{rng.randint(0, 99):02d}-{rng.randint(0, 99):02d}",
            account=f"{rng.randint(10000000, 99999999)}",
        ))
    return pupils, staff


def directory_csv(pupils, staff) -> str:
    lines = ["role,name,school_email,personal_emails,personal_phones,date_of_birth,status"]
    for s in staff:
        lines.append(f"{s.role},{s.name},{s.email},,,,current")
    for p in pupils:
        lines.append(
            f"pupil,{p.name},{p.email},{p.personal_email},{p.personal_phone},{p.dob.isoformat()},current"
        )
    return "\n".join(lines) + "\n"


def not_an_identifier(rng: random.Random) -> str:
    """A 10-digit number that is neither a valid ULN nor a valid NHS number."""
    while True:
        n = str(rng.randint(1_000_000_000, 9_999_999_999))
        if not uln_valid(n) and not nhs_valid(n):
            return n
