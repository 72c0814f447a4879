"""Where a finding sits and how large it is, as a report's words say: side, zone and extent.

`placement_of("small left apical pneumothorax")` is `Placement("left", "upper", 0.55)`. The
demo reads its own sentences with it, so the painter draws each finding where its report puts
it, and the offline expert reads the sentence it replaces with it, so a rewritten finding keeps
the side and zone of the one it stands in for.

Sides are the patient's ("right" is the image left on a frontal film). Zones are thirds of the
lung's height: "upper" (apex, upper lobe), "middle" (mid lung, middle lobe, lingula, hilum),
"lower" (base, lower lobe, retrocardiac, costophrenic angle). Extent is a relative size in
(0, 1] from the severity word, None when the text has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RIGHT, LEFT, BILATERAL = "right", "left", "bilateral"
UPPER, MIDDLE, LOWER = "upper", "middle", "lower"
SIDES = (RIGHT, LEFT, BILATERAL)
ZONES = (UPPER, MIDDLE, LOWER)


@dataclass(frozen=True)
class Placement:
    """A finding's side (`SIDES`), zone (`ZONES`) and extent, each None when not stated."""

    side: str | None = None
    zone: str | None = None
    extent: float | None = None


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(rf"\b(?:{'|'.join(words)})\b")


# Two-sided words first: "bibasilar" says both the sides and the zone.
_BILATERAL = _words("bilateral", "bilaterally", "bibasilar", "bibasal", "biapical", "both",
                    "multifocal", "diffuse", "bihilar")
_RIGHT, _LEFT = _words("right"), _words("left")
_UPPER = _words("apex", "apices", "apical", "biapical", "upper", "uppermost")
_MIDDLE = _words("mid", "middle", "lingula", "lingular", "perihilar", "hilar", "bihilar")
_LOWER = _words("base", "bases", "basilar", "bibasilar", "basal", "bibasal", "lower",
                "retrocardiac", "costophrenic", "infrahilar")
_EXTENTS = (
    (_words("trace", "tiny", "minimal"), 0.35),
    (_words("small", "mild", "mildly", "subtle", "faint"), 0.55),
    (_words("moderate", "moderately"), 0.8),
    (_words("large", "severe", "severely", "massive", "extensive", "marked", "markedly"), 1.0),
)
# A chest wall device's side is not where a lung finding is: "left chest wall pacemaker".
_DEVICE_SIDE = re.compile(r"\b(?:right|left)(?=[- ](?:chest wall|internal jugular|sided|subclavian))")


def placement_of(text: str) -> Placement:
    """The side, zone and extent `text` states for one finding (see the module docstring).

    Both sides named ("right greater than left") read as bilateral; several zones named read as
    the lowest, where the finding is densest on an upright film."""
    text = _DEVICE_SIDE.sub("", text.lower())
    right, left = bool(_RIGHT.search(text)), bool(_LEFT.search(text))
    if _BILATERAL.search(text) or (right and left):
        side = BILATERAL
    else:
        side = RIGHT if right else LEFT if left else None
    zone = next((zone for zone, pattern in ((LOWER, _LOWER), (MIDDLE, _MIDDLE), (UPPER, _UPPER))
                 if pattern.search(text)), None)
    extent = max((value for pattern, value in _EXTENTS if pattern.search(text)), default=None)
    return Placement(side, zone, extent)
