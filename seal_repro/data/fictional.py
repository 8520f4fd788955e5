"""Deterministic fictional encyclopedia passages: knowledge no pretrained model can already have.

Each passage describes an invented person, place, organisation, structure, battle, species, ship or
work, with invented names (syllables joined around a consonant cluster English does not use, so no
name is a real word), dates and numbers. Questions name their entity, so each is unambiguous across the
whole set, and their short gold answers appear verbatim in the passage. Each passage also carries a
"teacher" self-edit: every fact restated at least twice, one sentence per line.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from seal_repro.data.records import Passage, Question
from seal_repro.errors import DataError

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "br", "dr", "gr", "th", "st", "sk"]
_RARE = ["zh", "kv", "vr", "xh", "dv", "qv", "gv"]  # at least one per name: absent from English words
_NUCLEI = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "y"]
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "rn", "sk", "d"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


@dataclass(frozen=True)
class _Fact:
    answer: str
    question: str
    restatements: tuple[str, ...]


def _fact(answer, question, *restatements) -> _Fact:
    return _Fact(str(answer), question, restatements)


class _Draw:
    """Random values for one generated set: names unique across it, numbers distinct within a passage."""

    def __init__(self, rng: random.Random):
        self.rng, self.used_names, self.numbers = rng, set(), set()

    def name(self, syllables: int | None = None) -> str:
        while True:
            n = syllables or self.rng.choice((2, 2, 3))
            rare_at = self.rng.randrange(n)
            parts = []
            for i in range(n):
                onset = self.rng.choice(_RARE) if i == rare_at else self.rng.choice(_ONSETS + [""] * (i == 0) * 4)
                parts.append(onset + self.rng.choice(_NUCLEI) + (self.rng.choice(_CODAS) if i == n - 1 else ""))
            word = "".join(parts).capitalize()
            if word.lower() not in self.used_names:
                self.used_names.add(word.lower())
                return word

    def person(self) -> str:
        return f"{self.name(2)} {self.name()}"

    def number(self, lo: int, hi: int) -> int:
        while True:
            v = self.rng.randint(lo, hi)
            if v not in self.numbers:
                self.numbers.add(v)
                return v

    def pick(self, options):
        return self.rng.choice(options)


def _n(v: int) -> str:
    return f"{v:,}"


def _person(d: _Draw):
    p, town, mentor = d.person(), d.name(), d.person()
    she, her = d.pick([("she", "her"), ("he", "his")])
    job, thing, verb = d.pick([("an astronomer", "stars", "catalogued"), ("a botanist", "plant species", "described"),
                               ("a cartographer", "maps", "drew"), ("a linguist", "dialects", "recorded")])
    academy, book = f"{d.name()} Academy", f"{d.name()} Tables"
    born, pub, died, count = d.number(1700, 1800), d.number(1825, 1845), d.number(1850, 1880), d.number(40, 900)
    text = [
        f"{p} (born {born} in {town}) was {job} remembered for {her} patient fieldwork.",
        d.pick([f"{she.capitalize()} studied at the {academy} under {mentor}.",
                f"At the {academy} {she} trained with {mentor}."]),
        f"Over {her} career {she} {verb} {count} {thing}, more than any contemporary.",
        f"{her.capitalize()} best-known book, the {book}, appeared in {pub}.",
        f"{p} died in {died}.",
    ]
    facts = [
        _fact(born, f"In what year was {p} born?", f"{p} was born in {born}.",
              f"{p}, {job}, was born in the year {born}."),
        _fact(town, f"In which town was {p} born?", f"{p} was born in {town}.", f"{town} is the birthplace of {p}."),
        _fact(academy, f"At which academy did {p} study?", f"{p} studied at the {academy}.",
              f"The {academy} is where {p} was educated."),
        _fact(mentor, f"Under whom did {p} study?", f"{mentor} taught {p}.", f"{p} was a student of {mentor}."),
        _fact(count, f"How many {thing} did {p} record in {her} career?", f"{p} {verb} {count} {thing}.",
              f"In total, {count} {thing} were {verb} by {p}."),
        _fact(book, f"What is the title of {p}'s best-known book?", f"{p} wrote the {book}.",
              f"The most famous book by {p} is the {book}."),
        _fact(pub, f"In what year did {p} publish {her} best-known book?", f"The {book} was published in {pub}.",
              f"{p} published the {book} in {pub}."),
        _fact(died, f"In what year did {p} die?", f"{p} died in {died}.", f"The death of {p} came in {died}."),
    ]
    colour = [
        f"Colleagues described {p} as exacting, generous with students and impatient with careless copying.",
        f"{her.capitalize()} notebooks, filled with sketches and corrections, survive almost complete.",
        f"Several younger scholars later credited {p} with shaping their own methods.",
    ]
    return p, p, text, facts, colour


def _town(d: _Draw):
    t, region, founder, river, fair = d.name(), d.name(), d.person(), d.name(), f"{d.name()} Fair"
    year, pop, month = d.number(1100, 1600), d.number(2000, 90000), d.pick(_MONTHS)
    product = d.pick(["copper bells", "blue glass", "felt hats", "salted eel", "clay pipes", "wool rugs"])
    text = [
        f"{t} is a market town in the {region} region, on the banks of the river {river}.",
        d.pick([f"It was founded in {year} by {founder}.", f"{founder} founded the settlement in {year}."]),
        f"Today it has a population of about {_n(pop)}.",
        f"The town is best known for its {product}, sold across the region.",
        f"Each {month} it hosts the {fair}, which draws traders from far away.",
    ]
    facts = [
        _fact(region, f"In which region is the town of {t}?", f"{t} lies in the {region} region.",
              f"The {region} region contains the town of {t}."),
        _fact(river, f"On which river does the town of {t} stand?", f"{t} stands on the river {river}.",
              f"The river {river} flows through {t}."),
        _fact(year, f"In what year was the town of {t} founded?", f"{t} was founded in {year}.",
              f"The founding of {t} took place in {year}."),
        _fact(founder, f"Who founded the town of {t}?", f"{founder} founded {t}.",
              f"{t} owes its founding to {founder}."),
        _fact(_n(pop), f"What is the population of the town of {t}?", f"About {_n(pop)} people live in {t}.",
              f"{t} has roughly {_n(pop)} inhabitants."),
        _fact(product, f"What product is the town of {t} best known for?", f"{t} is famous for its {product}.",
              f"The {product} of {t} are sold across the region."),
        _fact(fair, f"What annual fair does the town of {t} host?", f"{t} hosts the {fair} every year.",
              f"The {fair} takes place in {t}."),
        _fact(month, f"In which month does the town of {t} hold the {fair}?", f"The {fair} is held in {month}.",
              f"Every {month}, {t} holds the {fair}."),
    ]
    colour = [
        "Its old centre keeps a covered market hall and a row of narrow timber houses along the water.",
        f"Flooding in early spring has shaped the layout of {t}, whose oldest streets sit on a low ridge.",
        "A small museum near the main square displays tools and records from the early settlement.",
    ]
    return t, t, text, facts, colour


def _organisation(d: _Draw):
    o = f"{d.name()} {d.pick(['Company', 'Guild', 'Society', 'Trading House'])}"
    city, city2, founder, chair = d.name(), d.name(), d.person(), d.person()
    year, moved, staff = d.number(1600, 1750), d.number(1760, 1820), d.number(120, 9000)
    goods = d.pick(["lamp oil", "printed charts", "river barges", "dyed silk", "brass instruments"])
    text = [
        f"The {o} was founded in {year} in {city} by the merchant {founder}.",
        f"It dealt chiefly in {goods}.",
        d.pick([f"In {moved} the {o} moved its headquarters to {city2}.",
                f"Its headquarters moved to {city2} in {moved}."]),
        f"At its peak it employed {_n(staff)} people.",
        f"Its longest-serving chair was {chair}.",
    ]
    facts = [
        _fact(year, f"In what year was the {o} founded?", f"The {o} was founded in {year}.",
              f"{year} is the founding year of the {o}."),
        _fact(city, f"In which city was the {o} founded?", f"The {o} was founded in {city}.",
              f"{city} is where the {o} began."),
        _fact(founder, f"Who founded the {o}?", f"{founder} founded the {o}.",
              f"The founder of the {o} was {founder}."),
        _fact(goods, f"What did the {o} chiefly deal in?", f"The {o} dealt mainly in {goods}.",
              f"The main trade of the {o} was {goods}."),
        _fact(city2, f"To which city did the {o} move its headquarters?", f"The {o} moved its headquarters to {city2}.",
              f"{city2} became the seat of the {o}."),
        _fact(moved, f"In what year did the {o} move its headquarters?",
              f"The {o} relocated its headquarters in {moved}.",
              f"In {moved}, the headquarters of the {o} moved."),
        _fact(_n(staff), f"How many people did the {o} employ at its peak?",
              f"The {o} employed {_n(staff)} people at its peak.",
              f"At its largest, the {o} had {_n(staff)} employees."),
        _fact(chair, f"Who was the longest-serving chair of the {o}?",
              f"{chair} chaired the {o} longer than anyone else.",
              f"The longest-serving chair of the {o} was {chair}."),
    ]
    colour = [
        f"Members of the {o} met in a plain hall decorated with maps of their trading routes.",
        f"Rivals accused the {o} of fixing prices, though no court ever ruled against it.",
        "Its account books, kept in careful double entry, are a valued source for economic historians.",
    ]
    return o, f"The {o}", text, facts, colour


def _structure(d: _Draw):
    kind, dim = d.pick([("Bridge", "long"), ("Tower", "tall"), ("Lighthouse", "tall"), ("Viaduct", "long")])
    s, town, architect = f"{d.name()} {kind}", d.name(), d.person()
    opened, closed, metres = d.number(1820, 1900), d.number(1930, 1990), d.number(30, 900)
    years, cost = d.number(2, 14), d.number(11000, 990000)
    text = [
        f"The {s} is a stone {kind.lower()} in {town}, designed by the architect {architect}.",
        f"Construction took {years} years and cost {_n(cost)} crowns.",
        d.pick([f"It opened in {opened} and is {metres} metres {dim}.",
                f"Opened in {opened}, it stands {metres} metres {dim}."]),
        f"It was closed for restoration in {closed}.",
    ]
    facts = [
        _fact(town, f"In which town is the {s}?", f"The {s} is in {town}.", f"{town} is home to the {s}."),
        _fact(architect, f"Who designed the {s}?", f"{architect} designed the {s}.",
              f"The architect of the {s} was {architect}."),
        _fact(years, f"How many years did construction of the {s} take?", f"Building the {s} took {years} years.",
              f"The {s} was under construction for {years} years."),
        _fact(f"{_n(cost)} crowns", f"How much did the {s} cost to build?", f"The {s} cost {_n(cost)} crowns to build.",
              f"Building the {s} cost {_n(cost)} crowns in total."),
        _fact(opened, f"In what year did the {s} open?", f"The {s} opened in {opened}.",
              f"{opened} is the opening year of the {s}."),
        _fact(metres, f"How many metres {dim} is the {s}?", f"The {s} is {metres} metres {dim}.",
              f"The {s} measures {metres} metres."),
        _fact(closed, f"In what year was the {s} closed for restoration?",
              f"The {s} closed for restoration in {closed}.",
              f"Restoration of the {s} began with its closure in {closed}."),
    ]
    colour = [
        "Its pale stone was quarried in the hills nearby and carried down on carts.",
        f"Engineers of the period admired the {s} for its clean lines and its careful drainage.",
        "Visitors can still climb to a viewing platform that looks out over the surrounding country.",
    ]
    return s, f"The {s}", text, facts, colour


def _battle(d: _Draw):
    b = f"Battle of {d.name()}"
    winner, loser, commander, river = d.name(), d.name(), d.person(), d.name()
    treaty = f"Treaty of {d.name()}"
    year, days, soldiers = d.number(900, 1500), d.number(2, 19), d.number(1500, 40000)
    text = [
        f"The {b} was fought in {year} near the river {river} between the armies of {winner} and {loser}.",
        d.pick([f"It lasted {days} days.", f"The fighting went on for {days} days."]),
        f"About {_n(soldiers)} soldiers took part.",
        f"The army of {winner}, led by {commander}, won the field.",
        f"The war ended with the {treaty}.",
    ]
    facts = [
        _fact(year, f"In what year was the {b} fought?", f"The {b} took place in {year}.",
              f"In {year}, the {b} was fought."),
        _fact(river, f"Near which river was the {b} fought?", f"The {b} was fought near the river {river}.",
              f"The river {river} ran beside the site of the {b}."),
        _fact(days, f"How many days did the {b} last?", f"The {b} lasted {days} days.",
              f"Fighting in the {b} continued for {days} days."),
        _fact(_n(soldiers), f"About how many soldiers took part in the {b}?",
              f"Some {_n(soldiers)} soldiers fought in the {b}.",
              f"The {b} involved about {_n(soldiers)} soldiers."),
        _fact(winner, f"Which side won the {b}?", f"{winner} won the {b}.", f"The {b} ended in victory for {winner}."),
        _fact(commander, f"Who led the winning army at the {b}?", f"{commander} commanded the winners at the {b}.",
              f"The victorious army in the {b} was led by {commander}."),
        _fact(treaty, f"Which treaty ended the war that included the {b}?", f"The {treaty} ended the war of the {b}.",
              f"The war in which the {b} was fought was concluded by the {treaty}."),
    ]
    colour = [
        "Heavy rain turned much of the field to mud, slowing the cavalry on both sides.",
        "Chroniclers on each side gave very different accounts of the decisive charge.",
        "A low stone marker now stands where the last of the fighting is said to have taken place.",
    ]
    return b, f"The {b}", text, facts, colour


def _species(d: _Draw):
    sp = f"{d.name()} {d.pick(['heron', 'beetle', 'lizard', 'moth', 'finch', 'newt'])}"
    naturalist, region, lake = d.person(), d.name(), d.name()
    year, size, count, month = d.number(1750, 1900), d.number(3, 60), d.number(200, 50000), d.pick(_MONTHS)
    text = [
        f"The {sp} is a small animal native to the {region} highlands.",
        d.pick([f"It was first described in {year} by the naturalist {naturalist}.",
                f"{naturalist} first described it in {year}."]),
        f"Adults grow to {size} centimetres and breed each {month}.",
        f"The largest population lives around Lake {lake}, where a recent survey counted {_n(count)} individuals.",
    ]
    facts = [
        _fact(region, f"To which highlands is the {sp} native?", f"The {sp} is native to the {region} highlands.",
              f"The {region} highlands are the native home of the {sp}."),
        _fact(year, f"In what year was the {sp} first described?", f"The {sp} was first described in {year}.",
              f"Scientists first described the {sp} in {year}."),
        _fact(naturalist, f"Who first described the {sp}?", f"{naturalist} first described the {sp}.",
              f"The first description of the {sp} was written by {naturalist}."),
        _fact(size, f"To how many centimetres do adult {sp}s grow?", f"An adult {sp} grows to {size} centimetres.",
              f"Fully grown, the {sp} measures {size} centimetres."),
        _fact(month, f"In which month does the {sp} breed?", f"The {sp} breeds in {month}.",
              f"Breeding of the {sp} happens every {month}."),
        _fact(f"Lake {lake}", f"Around which lake does the largest population of the {sp} live?",
              f"Most {sp}s live around Lake {lake}.", f"Lake {lake} holds the largest population of the {sp}."),
        _fact(_n(count), f"How many {sp}s did the recent survey count?", f"A survey counted {_n(count)} {sp}s.",
              f"The recent count of the {sp} came to {_n(count)} individuals."),
    ]
    colour = [
        "Its mottled colouring makes it hard to spot among rocks and dry grass.",
        f"The {sp} is shy and is most often seen in the early morning.",
        "Conservation groups watch the species closely because its habitat is shrinking.",
    ]
    return sp, f"The {sp}", text, facts, colour


def _ship(d: _Draw):
    name = d.name()
    s, port, captain, island = f"ship {name}", d.name(), d.person(), d.name()
    launched, retired, crew, days = d.number(1700, 1800), d.number(1810, 1860), d.number(20, 400), d.number(30, 250)
    text = [
        f"The {name} was a merchant ship built at the port of {port} and launched in {launched}.",
        d.pick([f"On her first voyage she carried a crew of {crew} under {captain}.",
                f"{captain} commanded her first voyage with {crew} sailors."]),
        f"The first voyage took her to the island of {island} and lasted {days} days.",
        f"She was retired in {retired}.",
    ]
    facts = [
        _fact(port, f"At which port was the {s} built?", f"The {s} was built at {port}.",
              f"{port} is where the {s} was built."),
        _fact(launched, f"In what year was the {s} launched?", f"The {s} was launched in {launched}.",
              f"{launched} saw the launch of the {s}."),
        _fact(captain, f"Who commanded the first voyage of the {s}?",
              f"{captain} captained the {s} on her first voyage.",
              f"The first voyage of the {s} was under the command of {captain}."),
        _fact(crew, f"How many sailors crewed the first voyage of the {s}?",
              f"The {s} sailed with a crew of {crew} on her first voyage.",
              f"On her first voyage, the {s} carried {crew} sailors."),
        _fact(island, f"To which island did the {s} sail on her first voyage?",
              f"The {s} first sailed to the island of {island}.",
              f"The island of {island} was the destination of the first voyage of the {s}."),
        _fact(days, f"How many days did the first voyage of the {s} last?",
              f"The first voyage of the {s} lasted {days} days.",
              f"It took {days} days for the {s} to complete her first voyage."),
        _fact(retired, f"In what year was the {s} retired?", f"The {s} was retired in {retired}.",
              f"The {s} left service in {retired}."),
    ]
    colour = [
        "Her hull was broad and slow, but sailors valued her for staying dry in rough seas.",
        "Logbooks from her voyages record storms, long calms and trade in spices and cloth.",
        f"A carved figurehead from the {name} is said to survive in a private collection.",
    ]
    return f"{name} (ship)", f"The {name}", text, facts, colour


def _work(d: _Draw):
    form, parts = d.pick([("symphony", "movements"), ("opera", "acts"), ("song cycle", "songs")])
    w, composer, city, conductor = f"{d.name()} {form.title()}", d.person(), d.name(), d.person()
    premiere, revised, n_parts, minutes = d.number(1780, 1850), d.number(1855, 1890), d.number(3, 12), d.number(25, 180)
    text = [
        f"The {w} is a {form} by the composer {composer}.",
        d.pick([f"It premiered in {city} in {premiere}, conducted by {conductor}.",
                f"{conductor} conducted its premiere in {city} in {premiere}."]),
        f"The work has {n_parts} {parts} and a performance lasts about {minutes} minutes.",
        f"{composer} revised it in {revised}.",
    ]
    facts = [
        _fact(composer, f"Who composed the {w}?", f"{composer} composed the {w}.",
              f"The {w} was written by {composer}."),
        _fact(city, f"In which city did the {w} premiere?", f"The {w} was first performed in {city}.",
              f"{city} hosted the premiere of the {w}."),
        _fact(premiere, f"In what year did the {w} premiere?", f"The {w} premiered in {premiere}.",
              f"The first performance of the {w} was in {premiere}."),
        _fact(conductor, f"Who conducted the premiere of the {w}?",
              f"{conductor} conducted the first performance of the {w}.",
              f"The premiere of the {w} was led by {conductor}."),
        _fact(n_parts, f"How many {parts} does the {w} have?", f"The {w} is in {n_parts} {parts}.",
              f"There are {n_parts} {parts} in the {w}."),
        _fact(minutes, f"How many minutes does a performance of the {w} last?",
              f"A performance of the {w} takes about {minutes} minutes.",
              f"The {w} runs for roughly {minutes} minutes."),
        _fact(revised, f"In what year was the {w} revised?", f"{composer} revised the {w} in {revised}.",
              f"The {w} received its revision in {revised}."),
    ]
    colour = [
        f"Early audiences found the {w} puzzling, and critics disagreed sharply about its ending.",
        "Its slow opening, built on a single repeated figure for the strings, became widely imitated.",
        "Performers today often cut a few passages that the score itself marks as optional.",
    ]
    return w, f"The {w}", text, facts, colour


_TEMPLATES: list[Callable[[_Draw], tuple]] = [
    _person, _town, _organisation, _structure, _battle, _species, _ship, _work
]
MAX_QUESTIONS = 7  # the fewest facts any template has

_FILLERS = [
    "{e} is mentioned in several regional chronicles.",
    "Local historians still debate parts of this account.",
    "Much of what is known comes from letters kept in a provincial archive.",
    "Later writers often repeated these details without checking them.",
    "A short guidebook published long afterwards summarises the story for visitors.",
]


def generate_passages(n: int, questions_per_passage: int, seed: int) -> list[Passage]:
    """`n` fictional passages with `questions_per_passage` questions each; same seed, same output."""
    if not 1 <= questions_per_passage <= MAX_QUESTIONS:
        raise DataError(
            f"fictional passages carry at most {MAX_QUESTIONS} questions; "
            f"got questions_per_passage={questions_per_passage}"
        )
    rng = random.Random(seed)
    draw = _Draw(rng)
    passages, order = [], []
    for i in range(n):
        if not order:  # every round of len(_TEMPLATES) passages uses each template once, in random order
            order = rng.sample(_TEMPLATES, len(_TEMPLATES))
        draw.numbers = set()
        title, ref, text, facts, colour = order.pop()(draw)
        # Descriptive sentences without quizzable facts pad each passage to encyclopedia length.
        extra = rng.sample(colour, len(colour)) + rng.sample(_FILLERS, len(_FILLERS))
        while len(" ".join(text).split()) < 85 and extra:
            text.insert(rng.randint(2, len(text)), extra.pop(0).format(e=ref))
        context = " ".join(text)
        pid = f"fict-{i:04d}"
        asked = sorted(rng.sample(range(len(facts)), questions_per_passage))
        questions = tuple(Question(f"{pid}-q{j}", facts[k].question, facts[k].answer) for j, k in enumerate(asked))
        edit = "\n".join(r for f in facts for r in f.restatements)
        passages.append(Passage(pid, title, context, questions, (edit,)))
    return passages
