"""Sections of a MIMIC-CXR free-text report, with the semantics of the official splitter.

MIT-LCP/mimic-cxr `txt/section_parser.py` (with `create_section_files.py`, which picks the section
that becomes the label) defines the sections the literature trains and evaluates on. Its rules,
written afresh here:

- A header is a newline, one space, a run of capitals, spaces and ``()/,-``, a colon, whitespace.
  Text before the first header is the preamble (the ``FINAL REPORT`` title, or an addendum or
  wet read on top).
- Header names are lower-cased and normalised to canonical names (`normalise_section_name`).
- Empty findings and impression sections are dropped.
- When no findings or impression remain, the last section is cut at its first blank line and the
  rest of it becomes ``last_paragraph``. Without a blank line there is no last paragraph: the
  official rules create none, which keeps a bare ``FINAL REPORT`` title out of the labels.
- The labelled section is impression, else findings, else last_paragraph, else comparison; of
  several sections with one name, the last (non-empty) one counts.

Departures from the official code, all in edge cases:
- an empty header directly above another header no longer swallows that header's line (the
  official code skips to the end of the line after the colon's whitespace, i.e. the next line);
- any whitespace-only line is a blank line (officially only ``" "``), and a blank line before a
  section's first words is not a paragraph break;
- an empty section counts as absent, so an empty last paragraph falls back to the comparison
  (officially it would be chosen, labelling the report with "");
- a report with no header is one ``preamble`` section (officially ``full report``);
- the official hand-made fixes for ~54 specific study ids are not carried.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

LabelledSection = Literal["impression", "findings", "last_paragraph", "comparison"]
LABEL_PRIORITY: tuple[LabelledSection, ...] = (
    "impression",
    "findings",
    "last_paragraph",
    "comparison",
)

# Header names that neither the containment rules nor the view phrases below would map right:
# synonyms and the misspellings that occur in MIMIC-CXR, each to its canonical name.
SECTION_NAME_VARIANTS: dict[str, str] = {
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "impresson": "impression",
    "imression": "impression",
    "impresion": "impression",
    "impession": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "imperssion": "impression",
    "mpression": "impression",
    "finding": "findings",
    "findngs": "findings",
    "findins": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "findgings": "findings",
    "findindgs": "findings",
    "indications": "indication",
    "idication": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "clinical indication": "indication",
    "clinical information": "history",
    "comparisons": "comparison",
    "comparision": "comparison",
    "comparsion": "comparison",
    "comparrison": "comparison",
    "comparisions": "comparison",
    "prior": "comparison",
    "reference exam": "comparison",
    "exam": "examination",
    "type of examination": "examination",
    "wetread": "wet read",
    "recommendation": "recommendations",
    "recommendation(s)": "recommendations",
}

# A header containing one of these is that section, first match wins: so "findings and
# impression" and "impression and recommendation" are impression, "clinical history" is history.
CONTAINED_SECTION_NAMES = ("impression", "findings", "history", "comparison", "addendum")

# Headers that name the views taken ("CHEST, PA AND LAT:") head the description of the images,
# which is what findings are.
VIEW_PHRASES = re.compile(
    "chest|portable|ribs|bone window|two views|one view|frontal and|frontal (?:semi-)?upright"
    "|(?:pa|ap|frontal|lateral) view|(?:pa|ap) and lat|lateral and (?:pa|ap)"
)

# The name must hold a capital so that a stray "\n  :" or "\n (-):" is not a header; the negative
# lookahead (whitespace or end after the colon) keeps "\n TIME:10:30" out, as the official `:\s`.
HEADER = re.compile(r"\n ([ ()/,-]*[A-Z][A-Z ()/,-]*):(?!\S)")
PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
WORD = re.compile(r"\S")

DROPPED_WHEN_EMPTY = frozenset({"findings", "impression"})


@dataclass(frozen=True)
class ReportSections:
    """The sections of one report that later stages use, whitespace collapsed; None when absent."""

    findings: str | None = None
    impression: str | None = None
    indication: str | None = None
    comparison: str | None = None
    history: str | None = None
    technique: str | None = None
    examination: str | None = None
    last_paragraph: str | None = None
    labelled_section: LabelledSection | None = None

    @property
    def labelled_text(self) -> str | None:
        """The text of the labelled section (what the official CheXpert labels were read from)."""
        return None if self.labelled_section is None else getattr(self, self.labelled_section)

    @property
    def findings_text(self) -> str | None:
        """Findings, else impression, else the last paragraph: the description models learn."""
        return self.findings or self.impression or self.last_paragraph


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (newlines, MIMIC's leading spaces) as single spaces, ends stripped."""
    return " ".join(text.split())


@functools.lru_cache(maxsize=4096)
def normalise_section_name(raw: str) -> str:
    """The canonical name of a header as written (``"IMPRESSON"`` → ``"impression"``).

    Unknown names come back lower-cased, e.g. ``"notification"``.
    """
    name = collapse_whitespace(raw.lower())
    if name in SECTION_NAME_VARIANTS:
        return SECTION_NAME_VARIANTS[name]
    for section in CONTAINED_SECTION_NAMES:
        if section in name:
            return section
    if VIEW_PHRASES.search(name):
        return "findings"
    return name


def split_sections(text: str) -> list[tuple[str, str]]:
    """Every section in report order as (normalised name, raw text), the preamble first.

    Nothing is dropped or re-cut here; `extract_sections` applies the selection rules.
    """
    sections = []
    name, start = "preamble", 0
    for header in HEADER.finditer(text):
        sections.append((name, text[start : header.start()]))
        name, start = normalise_section_name(header.group(1)), header.end()
    sections.append((name, text[start:]))
    return sections


def extract_sections(text: str) -> ReportSections:
    """The findings, impression, labelled section and context sections of one report."""
    sections = [
        (name, body)
        for name, body in split_sections(text)
        if name not in DROPPED_WHEN_EMPTY or body.strip()
    ]
    texts: dict[str, str] = {}
    for name, body in sections:
        collapsed = collapse_whitespace(body)
        if collapsed:
            texts[name] = collapsed
    if DROPPED_WHEN_EMPTY.isdisjoint(texts):
        last_name, last_body = sections[-1]
        paragraphs = _split_first_paragraph(last_body)
        if paragraphs is not None:
            texts[last_name] = collapse_whitespace(paragraphs[0])
            rest = collapse_whitespace(paragraphs[1])
            if rest:
                texts["last_paragraph"] = rest
    return ReportSections(
        findings=texts.get("findings"),
        impression=texts.get("impression"),
        indication=texts.get("indication"),
        comparison=texts.get("comparison"),
        history=texts.get("history"),
        technique=texts.get("technique"),
        examination=texts.get("examination"),
        last_paragraph=texts.get("last_paragraph"),
        labelled_section=next((name for name in LABEL_PRIORITY if name in texts), None),
    )


def _split_first_paragraph(text: str) -> tuple[str, str] | None:
    """(first paragraph, everything after it), cut at the first blank line after some words."""
    first_word = WORD.search(text)
    if first_word is None:
        return None
    paragraph_break = PARAGRAPH_BREAK.search(text, first_word.start())
    if paragraph_break is None:
        return None
    return text[: paragraph_break.start()], text[paragraph_break.end() :]
