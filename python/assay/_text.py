"""Text output that is safe for a terminal: control characters in user data are escaped.

Slice values come from the user's data, and a value can hold anything: newlines (a value
``"a\\nb\\nc"`` would print as three rows), escape sequences that recolour or clear the terminal,
NUL, or U+202E (right-to-left override) that makes text read backwards. Every place assay prints
user data as text (the CLI's table and CSV output, its error messages, the ``repr`` of result
objects) goes through :func:`escape` or :func:`escape_frame`.

A character is escaped when Python does not consider it printable (``str.isprintable``): the
C0 and C1 controls, DEL, the Unicode format characters (bidi overrides and isolates, zero-width
characters), line and paragraph separators, and unassigned code points; the space is kept. It is
written as ``\\n``, ``\\r``, ``\\t``, ``\\xHH``, ``\\uHHHH`` or ``\\UHHHHHHHH``, as in a Python
string literal. Backslashes are not doubled, so ordinary text such as ``C:\\dir`` prints as it is.
"""

from __future__ import annotations

import polars as pl

__all__ = ["escape", "escape_frame", "NEEDS_ESCAPE"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# A vectorized pre-check, so that only the rare cells that need it are escaped one by one: the
# C0/C1 controls and DEL, and the characters of the Unicode categories Cf (format: bidi
# controls, zero-width characters), Zl, Zp, Cs, Co and Cn that str.isprintable rejects too.
NEEDS_ESCAPE = r"[\x00-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}[\p{Zs}--\x20]]"


def _char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: object) -> str:
    """``text`` (converted with ``str``) with every non-printable character escaped."""
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else _char(ch) for ch in s)


def _escape_series(s: pl.Series) -> pl.Series:
    if s.dtype == pl.String:
        flagged = s.str.contains(NEEDS_ESCAPE).fill_null(False)
        if not flagged.any():
            return s
        # Only the distinct values that need it (a loop over slice labels, never over rows).
        bad = s.filter(flagged).unique().to_list()
        return s.replace_strict(bad, [escape(v) for v in bad], default=s)
    if isinstance(s.dtype, (pl.Categorical, pl.Enum)):
        return _escape_series(s.cast(pl.String))
    if isinstance(s.dtype, (pl.List, pl.Struct, pl.Array)):
        # Nested values print through their repr: escape that text.
        return pl.Series(s.name, [None if v is None else escape(repr(v)) for v in s.to_list()],
                         dtype=pl.String)
    return s


def escape_frame(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with control characters escaped in every text cell and column name, for
    printing (numbers are untouched)."""
    cols = [_escape_series(df.get_column(c)) for c in df.columns]
    names = [escape(c) for c in df.columns]
    # Escaping could make two names equal only if one already held the escape text.
    if len(set(names)) != len(names):
        names = [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]
    return pl.DataFrame([c.alias(n) for c, n in zip(cols, names, strict=True)])
