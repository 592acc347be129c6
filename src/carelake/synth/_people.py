"""Who the synthetic patients are: age, sex, race, ethnicity, names, addresses and identifiers.

Rates come from the 2020 US Census (age bands, race and Hispanic origin) and are documented in
``docs/synthetic-data.md``. Identifiers are built so that they can never belong to a real person: SSNs use
area numbers 900-999 (never issued), phone numbers use the 555 exchange, e-mail addresses use example.com.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from carelake.synth._calendar import Calendar
from carelake.synth._draws import Draws, Weighted

# Age at the start of the window, 2020 Census (DP05) shares by band: (low, high inclusive, share).
AGE_BANDS = Weighted(
    [
        ((0, 4), 5.7),
        ((5, 17), 16.4),
        ((18, 24), 9.4),
        ((25, 34), 13.7),
        ((35, 44), 13.0),
        ((45, 54), 12.4),
        ((55, 64), 12.9),
        ((65, 74), 9.6),
        ((75, 84), 4.8),
        ((85, 99), 2.0),
    ]
)
# 2020 Census: 18.7 % Hispanic or Latino; race among non-Hispanic and Hispanic respondents.
HISPANIC_SHARE = 0.187
RACE_NOT_HISPANIC = Weighted(
    [("white", 71.1), ("black", 14.9), ("asian", 7.3), ("aian", 0.9), ("nhpi", 0.2), ("other", 0.6), ("multiple", 5.0)]
)
RACE_HISPANIC = Weighted([("white", 45.0), ("other", 40.0), ("multiple", 10.0), ("black", 3.0), ("aian", 2.0)])

GIVEN_MALE = (
    "James",
    "Robert",
    "John",
    "Michael",
    "David",
    "William",
    "Richard",
    "Joseph",
    "Thomas",
    "Christopher",
    "Charles",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Donald",
    "Steven",
    "Andrew",
    "Paul",
    "Joshua",
    "Kenneth",
    "Kevin",
    "Brian",
    "George",
    "Timothy",
    "Ronald",
    "Edward",
    "Jason",
    "Jeffrey",
    "Ryan",
    "Jacob",
    "Gary",
    "Nicholas",
    "Eric",
    "Jonathan",
    "Stephen",
    "Larry",
    "Justin",
    "Scott",
    "Benjamin",
    "Samuel",
    "Gregory",
    "Alexander",
    "Patrick",
    "Frank",
    "Raymond",
    "Jack",
    "Dennis",
    "Tyler",
    "Aaron",
    "Ethan",
    "Noah",
    "Liam",
    "Walter",
    "Harold",
    "Darnell",
    "Malik",
    "Hiroshi",
    "Wei",
    "Arjun",
)
GIVEN_FEMALE = (
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Lisa",
    "Nancy",
    "Betty",
    "Margaret",
    "Sandra",
    "Ashley",
    "Kimberly",
    "Emily",
    "Donna",
    "Michelle",
    "Carol",
    "Amanda",
    "Dorothy",
    "Melissa",
    "Deborah",
    "Stephanie",
    "Rebecca",
    "Sharon",
    "Laura",
    "Cynthia",
    "Kathleen",
    "Amy",
    "Angela",
    "Shirley",
    "Anna",
    "Brenda",
    "Pamela",
    "Emma",
    "Nicole",
    "Helen",
    "Samantha",
    "Katherine",
    "Christine",
    "Debra",
    "Rachel",
    "Carolyn",
    "Janet",
    "Catherine",
    "Victoria",
    "Olivia",
    "Ava",
    "Sophia",
    "Abigail",
    "Judith",
    "Ruth",
    "Keisha",
    "Latoya",
    "Mei",
    "Priya",
    "Yuki",
)
GIVEN_MALE_HISPANIC = (
    "Jose",
    "Juan",
    "Luis",
    "Carlos",
    "Jorge",
    "Miguel",
    "Francisco",
    "Antonio",
    "Alejandro",
    "Manuel",
    "Ricardo",
    "Eduardo",
    "Javier",
    "Fernando",
    "Roberto",
    "Diego",
    "Mateo",
)
GIVEN_FEMALE_HISPANIC = (
    "Maria",
    "Guadalupe",
    "Ana",
    "Rosa",
    "Carmen",
    "Sofia",
    "Isabella",
    "Lucia",
    "Veronica",
    "Gabriela",
    "Adriana",
    "Daniela",
    "Alejandra",
    "Elena",
    "Camila",
)
FAMILY = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Hill",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Phillips",
    "Evans",
    "Turner",
    "Parker",
    "Collins",
    "Edwards",
    "Stewart",
    "Morris",
    "Murphy",
    "Cook",
    "Rogers",
    "Morgan",
    "Cooper",
    "Peterson",
    "Reed",
    "Bailey",
    "Bell",
    "Kelly",
    "Howard",
    "Ward",
    "Cox",
    "Richardson",
    "Wood",
    "Watson",
    "Brooks",
    "Bennett",
    "Gray",
    "James",
    "Hughes",
    "Price",
    "Sanders",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Washington",
    "O'Brien",
    "McCarthy",
    "Schmidt",
    "Novak",
    "Kowalski",
    "Olson",
    "Larson",
    "Becker",
    "Fischer",
)
FAMILY_HISPANIC = (
    "Garcia",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Perez",
    "Sanchez",
    "Ramirez",
    "Torres",
    "Flores",
    "Rivera",
    "Gomez",
    "Diaz",
    "Reyes",
    "Morales",
    "Cruz",
    "Ortiz",
    "Gutierrez",
    "Chavez",
    "Ramos",
    "Ruiz",
    "Alvarez",
    "Mendoza",
    "Castillo",
    "Vasquez",
)
FAMILY_ASIAN = (
    "Nguyen",
    "Kim",
    "Lee",
    "Patel",
    "Chen",
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Singh",
    "Tran",
    "Park",
    "Shah",
    "Yang",
    "Huang",
    "Wu",
    "Choi",
    "Pham",
    "Tanaka",
    "Sato",
    "Kumar",
    "Gupta",
)
NICKNAMES = {
    "William": ("Bill", "Will", "Billy"),
    "Robert": ("Bob", "Rob", "Bobby"),
    "Richard": ("Rick", "Dick", "Rich"),
    "James": ("Jim", "Jimmy"),
    "John": ("Jack", "Johnny"),
    "Michael": ("Mike",),
    "Joseph": ("Joe", "Joey"),
    "Thomas": ("Tom", "Tommy"),
    "Charles": ("Charlie", "Chuck"),
    "Christopher": ("Chris",),
    "Daniel": ("Dan", "Danny"),
    "Matthew": ("Matt",),
    "Anthony": ("Tony",),
    "Steven": ("Steve",),
    "Edward": ("Ed", "Ted", "Eddie"),
    "Andrew": ("Andy", "Drew"),
    "Donald": ("Don",),
    "Kenneth": ("Ken",),
    "Timothy": ("Tim",),
    "Ronald": ("Ron",),
    "Jeffrey": ("Jeff",),
    "Nicholas": ("Nick",),
    "Gregory": ("Greg",),
    "Benjamin": ("Ben",),
    "Samuel": ("Sam",),
    "Alexander": ("Alex",),
    "Patrick": ("Pat",),
    "Raymond": ("Ray",),
    "Jonathan": ("Jon",),
    "Stephen": ("Steve",),
    "Lawrence": ("Larry",),
    "Walter": ("Walt",),
    "Harold": ("Harry", "Hal"),
    "Jennifer": ("Jen", "Jenny"),
    "Elizabeth": ("Liz", "Beth", "Betsy"),
    "Patricia": ("Pat", "Patty", "Trish"),
    "Margaret": ("Peggy", "Maggie", "Meg"),
    "Katherine": ("Kate", "Katie"),
    "Catherine": ("Cathy", "Kate"),
    "Susan": ("Sue", "Susie"),
    "Deborah": ("Debbie", "Deb"),
    "Debra": ("Debbie",),
    "Barbara": ("Barb",),
    "Jessica": ("Jess",),
    "Rebecca": ("Becky",),
    "Kimberly": ("Kim",),
    "Cynthia": ("Cindy",),
    "Victoria": ("Vicky", "Tori"),
    "Dorothy": ("Dot", "Dottie"),
    "Samantha": ("Sam",),
    "Pamela": ("Pam",),
    "Christine": ("Chris",),
    "Judith": ("Judy",),
    "Abigail": ("Abby",),
    "Jose": ("Pepe",),
    "Francisco": ("Paco", "Frank"),
    "Guadalupe": ("Lupe",),
    "Alejandro": ("Alex",),
    "Alejandra": ("Alex",),
    "Roberto": ("Beto",),
    "Eduardo": ("Lalo",),
    "Gabriela": ("Gaby",),
    "Daniela": ("Dani",),
}
# (city, state, ZIP prefix, area code, weight): a regional health system with a long tail of addresses.
PLACES = Weighted(
    [
        (("Springfield", "IL", "627", "217"), 18.0),
        (("Decatur", "IL", "625", "217"), 6.0),
        (("Champaign", "IL", "618", "217"), 6.0),
        (("Peoria", "IL", "616", "309"), 6.0),
        (("Bloomington", "IL", "617", "309"), 4.0),
        (("Chicago", "IL", "606", "312"), 5.0),
        (("St. Louis", "MO", "631", "314"), 4.0),
        (("Indianapolis", "IN", "462", "317"), 2.0),
        (("Columbus", "OH", "432", "614"), 1.0),
        (("Madison", "WI", "537", "608"), 1.0),
        (("Austin", "TX", "787", "512"), 1.0),
        (("Denver", "CO", "802", "303"), 1.0),
        (("Phoenix", "AZ", "850", "602"), 1.0),
        (("Atlanta", "GA", "303", "404"), 1.0),
        (("Miami", "FL", "331", "305"), 1.0),
        (("Seattle", "WA", "981", "206"), 0.5),
        (("Boston", "MA", "021", "617"), 0.5),
        (("Albuquerque", "NM", "871", "505"), 0.5),
    ]
)
STREETS = (
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Highland",
    "River",
    "Church",
    "Spring",
    "Ridge",
    "Walnut",
    "Chestnut",
    "Jefferson",
    "Lincoln",
    "Madison",
    "Franklin",
    "Prairie",
    "Meadow",
    "Willow",
    "Birch",
    "Cherry",
    "Hickory",
    "Adams",
    "Grand",
)
STREET_TYPES = ("St", "Ave", "Rd", "Dr", "Ln", "Blvd", "Ct", "Way", "Pl")
MARITAL = Weighted([("M", 50.0), ("S", 33.0), ("D", 11.0), ("W", 6.0)])


@dataclass(frozen=True, slots=True)
class Person:
    """The identity on one Patient record (a duplicate record is another Person for the same human)."""

    given: str
    middle: str
    family: str
    sex: str
    birth: int
    race: str
    ethnicity: str
    line: str
    city: str
    state: str
    postal_code: str
    area_code: str
    phone: str
    email: str | None
    ssn: str | None
    mrn: str
    mrn_system: str
    member_id: str
    marital: str
    language: str

    @property
    def full_name(self) -> str:
        return f"{self.given} {self.middle[:1]}. {self.family}" if self.middle else f"{self.given} {self.family}"

    @property
    def address_text(self) -> str:
        return f"{self.line}, {self.city}, {self.state} {self.postal_code}"


def draw_age(draws: Draws) -> int:
    low, high = draws.weighted(AGE_BANDS)
    return draws.between(low, high)


def draw_race(draws: Draws) -> tuple[str, str]:
    """(race key, ethnicity key) following the 2020 Census mix."""
    if draws.chance(HISPANIC_SHARE):
        return draws.weighted(RACE_HISPANIC), "hispanic"
    return draws.weighted(RACE_NOT_HISPANIC), "not-hispanic"


def _email_part(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalpha())


def draw_person(draws: Draws, *, sex: str, birth: int, race: str, ethnicity: str, age: int, mrn_system: str) -> Person:
    """Name, address, contact details and identifiers for a new patient."""
    hispanic = ethnicity == "hispanic"
    if sex == "male":
        given_pool = GIVEN_MALE_HISPANIC if hispanic and draws.chance(0.6) else GIVEN_MALE
        middle_pool = GIVEN_MALE
    else:
        given_pool = GIVEN_FEMALE_HISPANIC if hispanic and draws.chance(0.6) else GIVEN_FEMALE
        middle_pool = GIVEN_FEMALE
    given = draws.pick(given_pool)
    middle = draws.pick(middle_pool) if draws.chance(0.7) else ""
    if hispanic and draws.chance(0.75):
        family = draws.pick(FAMILY_HISPANIC)
    elif race == "asian" and draws.chance(0.8):
        family = draws.pick(FAMILY_ASIAN)
    else:
        family = draws.pick(FAMILY)
    city, state, line, postal, area = _draw_address(draws)
    phone = f"({area}) 555-{draws.between(0, 9999):04d}"
    email = None
    if age >= 14 and draws.chance(0.8):
        email = f"{_email_part(given)}.{_email_part(family)}{draws.between(1, 99)}@example.com"
    ssn = (
        f"{draws.between(900, 999)}-{draws.between(1, 99):02d}-{draws.between(1, 9999):04d}"
        if draws.chance(0.92)
        else None
    )
    marital = draws.weighted(MARITAL) if age >= 18 else "S"
    if marital == "W" and age < 50:
        marital = "M"
    language = "es" if hispanic and draws.chance(0.28) else "en"
    return Person(
        given=given,
        middle=middle,
        family=family,
        sex=sex,
        birth=birth,
        race=race,
        ethnicity=ethnicity,
        line=line,
        city=city,
        state=state,
        postal_code=postal,
        area_code=area,
        phone=phone,
        email=email,
        ssn=ssn,
        mrn=f"{draws.between(10_000_000, 99_999_999)}",
        mrn_system=mrn_system,
        member_id=f"{'ABCDEFGHJKLMNPRSTUVWXYZ'[draws.between(0, 22)]}{draws.between(100_000_000, 999_999_999)}",
        marital=marital,
        language=language,
    )


def _draw_address(draws: Draws) -> tuple[str, str, str, str, str]:
    city, state, zip3, area = draws.weighted(PLACES)
    line = f"{draws.between(1, 9899)} {draws.pick(STREETS)} {draws.pick(STREET_TYPES)}"
    if draws.chance(0.18):
        line += f" Apt {draws.between(1, 40)}{draws.pick('ABCD')}"
    return city, state, line, f"{zip3}{draws.between(1, 99):02d}", area


_KEYBOARD_NEIGHBOURS = {
    "a": "sq",
    "b": "vn",
    "c": "xv",
    "d": "sf",
    "e": "wr",
    "f": "dg",
    "g": "fh",
    "h": "gj",
    "i": "uo",
    "j": "hk",
    "k": "jl",
    "l": "k",
    "m": "n",
    "n": "bm",
    "o": "ip",
    "p": "o",
    "r": "et",
    "s": "ad",
    "t": "ry",
    "u": "yi",
    "v": "cb",
    "w": "qe",
    "y": "tu",
    "z": "x",
}


def typo(draws: Draws, word: str) -> str:
    """One realistic keying error: swapped, dropped, doubled or mistyped letter (never the first letter)."""
    if len(word) < 4:
        return word + word[-1]
    position = draws.between(1, len(word) - 2)
    kind = draws.between(0, 3)
    if kind == 0:
        return word[:position] + word[position + 1] + word[position] + word[position + 2 :]
    if kind == 1:
        return word[:position] + word[position + 1 :]
    if kind == 2:
        return word[:position] + word[position] + word[position:]
    neighbours = _KEYBOARD_NEIGHBOURS.get(word[position].lower(), "e")
    return word[:position] + draws.pick(neighbours) + word[position + 1 :]


def duplicate_of(person: Person, draws: Draws, calendar: Calendar, *, mrn_system: str) -> tuple[Person, list[str]]:
    """The same human as registered by another source system: new MRN plus typical variations."""
    changes = ["other-source-mrn"]
    given, family, birth = person.given, person.family, person.birth
    nicknames = NICKNAMES.get(given)
    if nicknames and draws.chance(0.55):
        given = draws.pick(nicknames)
        changes.append("nickname")
    elif draws.chance(0.2):
        given = typo(draws, given)
        changes.append("given-typo")
    if draws.chance(0.4):
        family = typo(draws, family)
        changes.append("family-typo")
    if draws.chance(0.12):
        born = calendar.to_date(birth)
        if born.day <= 12 and born.day != born.month:
            swapped = dt.date(born.year, born.day, born.month)
            birth = birth + (swapped - born).days
            changes.append("birth-day-month-swapped")
        else:
            birth += 1 if draws.chance(0.5) else -1
            changes.append("birth-date-off-by-one")
    city, state, line, postal, area = person.city, person.state, person.line, person.postal_code, person.area_code
    phone = person.phone
    if draws.chance(0.35):
        city, state, line, postal, area = _draw_address(draws)
        changes.append("moved")
    if draws.chance(0.3):
        phone = f"({area}) 555-{draws.between(0, 9999):04d}"
        changes.append("new-phone")
    ssn = person.ssn
    if ssn and draws.chance(0.5):
        ssn = None
        changes.append("ssn-missing")
    email = person.email if draws.chance(0.6) else None
    variant = replace(
        person,
        given=given,
        family=family,
        birth=birth,
        city=city,
        state=state,
        line=line,
        postal_code=postal,
        area_code=area,
        phone=phone,
        ssn=ssn,
        email=email,
        mrn=f"{draws.between(1_000_000, 9_999_999)}",
        mrn_system=mrn_system,
        middle=person.middle if draws.chance(0.5) else "",
    )
    return variant, changes
