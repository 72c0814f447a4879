"""Hand-written reports in the MIMIC-CXR text layout, for the report and section tests."""

TITLE = "                                FINAL REPORT"


def mimic_report(*lines: str) -> str:
    """A report laid out as MIMIC-CXR writes it: every line, blank ones too, starts with a space."""
    return "".join(f" {line}\n" for line in lines)
