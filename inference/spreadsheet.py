"""Text cells a spreadsheet will not run: CSV exports carry titles and abstracts from files
anyone can write, and a cell starting with `=` is a formula to Excel, LibreOffice and Sheets
(CSV injection; the OWASP rule: prefix such a cell with an apostrophe)."""

from __future__ import annotations

from typing import Any

# The characters a spreadsheet reads as the start of a formula (tab and CR included: some
# strip them and read on), per OWASP's CSV Injection page.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defuse(value: Any) -> Any:
    """`value` with an apostrophe before it when it is a string a spreadsheet would read as a
    formula; any other value unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
