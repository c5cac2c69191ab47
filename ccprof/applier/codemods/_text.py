"""Reading a script for ``ccprof apply`` and writing the rewrite back in the same form.

Python reads a source file as UTF-8 unless a byte-order mark or a PEP 263 coding cookie
(``# -*- coding: latin-1 -*-`` in line 1 or 2) says otherwise, and it treats ``\\r\\n``,
``\\r`` and ``\\n`` alike. The codemods work on ``\\n`` text without a BOM. ``read_script``
returns that text with what it takes to write the result back byte for byte in the input's
form (encoding, BOM, line endings); ``write_script`` does so::

    script = read_script("train.py")           # ScriptText
    result = apply_source(script.source, ["tf32"], path="train.py", like=script)
    write_script("train_ccprof.py", result.source, like=script)

A file whose line endings are mixed keeps them as they are: its text is not normalized and
is written back unchanged apart from the codemods' edits.
"""
from __future__ import annotations

import codecs
import io
import tokenize
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["ScriptText", "ScriptEncodingError", "read_script", "write_script", "decode_script",
           "encode_script", "split_newlines", "join_newlines", "format_change"]

BOM = codecs.BOM_UTF8
_NEWLINE_NAMES = {"\n": "LF", "\r\n": "CRLF", "\r": "CR", None: "mixed"}


class ScriptEncodingError(ValueError):
    """The file cannot be read (or written) as Python source in its encoding."""

    def __init__(self, path: str, message: str, encoding: str | None = None) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message, self.encoding = path, message, encoding


@dataclass(frozen=True)
class ScriptText:
    """A script's text and how its file stores it.

    source: the decoded text, BOM removed, line endings turned into "\\n" (left as they are
        when ``newline`` is None);
    encoding: the codec Python reads the file with ("utf-8", or the coding cookie's, as
        ``tokenize.detect_encoding`` names it: "iso-8859-1" for latin-1);
    bom: the file starts with a UTF-8 byte-order mark;
    newline: "\\n", "\\r\\n" or "\\r"; None when the file mixes them (kept as is);
    declared: the encoding comes from a coding cookie;
    path: the file it was read from ("<script>" when decoded from bytes).
    """
    source: str
    encoding: str = "utf-8"
    bom: bool = False
    newline: str | None = "\n"
    declared: bool = False
    path: str = "<script>"

    def encode(self, text: str | None = None) -> bytes:
        """The bytes of ``text`` (default: ``source``) in this file's form."""
        return encode_script(self.source if text is None else text, self)


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def split_newlines(text: str) -> tuple[str, str | None]:
    """(text with "\\n" line endings, the style it had): "\\n", "\\r\\n" or "\\r"; None for a
    mix, whose text is returned unchanged. Text without line breaks counts as "\\n"."""
    crlf = text.count("\r\n")
    cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    kinds = [nl for nl, n in (("\r\n", crlf), ("\n", lf), ("\r", cr)) if n]
    if not kinds:
        return text, "\n"
    if len(kinds) > 1:
        return text, None
    newline = kinds[0]
    return (text if newline == "\n" else text.replace(newline, "\n")), newline


def join_newlines(text: str, newline: str | None) -> str:
    """``text``'s "\\n" line endings as ``newline`` (None or "\\n": unchanged)."""
    return text if newline in (None, "\n") else text.replace("\n", newline)


def decode_script(data: bytes, path: str = "<script>") -> ScriptText:
    """Decode a script's bytes the way Python does (BOM, coding cookie, else UTF-8)."""
    bom = data.startswith(BOM)
    body = data[len(BOM):] if bom else data
    declared = _has_cookie(body)
    try:
        encoding, _lines = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as e:
        msg = str(getattr(e, "msg", e))
        if msg.startswith("invalid or missing encoding declaration"):
            encoding = "utf-8"      # a line 1 or 2 that is not UTF-8: say where, below
        elif bom:
            raise ScriptEncodingError(path, "not a readable Python file: it starts with a UTF-8 BOM but "
                                      f"its coding cookie names another encoding ({msg})") from None
        else:
            raise ScriptEncodingError(path, f"not a readable Python file: its coding cookie names an "
                                      f"encoding Python does not know ({msg})") from None
    if encoding == "utf-8-sig":
        encoding = "utf-8"
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as e:
        raise ScriptEncodingError(path, _decode_message(body, encoding, declared, e), encoding) from None
    source, newline = split_newlines(text)
    return ScriptText(source, encoding, bom, newline, declared, path)


def _has_cookie(body: bytes) -> bool:
    """A coding cookie in line 1 or 2 (the only place Python honours it); ``body`` without BOM."""
    for line in body.splitlines()[:2]:
        text = line.decode("latin-1")
        if tokenize.cookie_re.match(text):
            return True
        if text.strip() and not text.lstrip().startswith("#"):
            return False        # code in line 1: Python does not look at line 2
    return False


def _decode_message(body: bytes, encoding: str, declared: bool, e: UnicodeDecodeError) -> str:
    line = body.count(b"\n", 0, e.start) + 1
    col = e.start - (body.rfind(b"\n", 0, e.start) + 1) + 1
    name = "UTF-8" if _is_utf8(encoding) else encoding
    why = (f"its coding cookie says {encoding}" if declared
           else "it has no coding cookie, so Python reads it as UTF-8")
    return (f"not a {name} Python file: byte 0x{body[e.start]:02x} at line {line}, column {col} "
            f"is not valid {name} ({why})")


def read_script(path: str | Path) -> ScriptText:
    """Read a Python script for the codemods; raises ``ScriptEncodingError`` (a ValueError)
    naming the file and the encoding tried when it does not decode, OSError when unreadable."""
    p = Path(path)
    return decode_script(p.read_bytes(), str(p))


def encode_script(text: str, like: ScriptText) -> bytes:
    """``text`` ("\\n" line endings) as the bytes of a file in ``like``'s form."""
    body = join_newlines(text, like.newline)
    try:
        data = body.encode(like.encoding)
    except UnicodeEncodeError as e:
        line = body.count("\n", 0, e.start) + 1
        raise ScriptEncodingError(
            like.path, f"cannot write the result as {like.encoding} (the file's encoding): "
            f"{body[e.start]!r} (U+{ord(body[e.start]):04X}) at line {line} has no {like.encoding} "
            "form", like.encoding) from None
    return BOM + data if like.bom else data


def write_script(path: str | Path, text: str, like: ScriptText) -> None:
    """Write ``text`` (as the codemods return it) to ``path`` in ``like``'s encoding, BOM and
    line endings. Encodes first, so a text that cannot be encoded leaves ``path`` untouched."""
    data = encode_script(text, replace(like, path=str(path)))
    Path(path).write_bytes(data)


def format_change(text: str, like: ScriptText) -> str | None:
    """None when ``text`` written in ``like``'s form reads back as the same form (encoding,
    BOM, line endings); else a sentence saying what changes. Raises ``ScriptEncodingError``
    when ``text`` cannot be written in that encoding."""
    data = encode_script(text, like)
    try:
        back = decode_script(data, like.path)
    except ScriptEncodingError as e:
        return f"the output does not read back as Python source: {e.message}"
    changes = []
    if codecs.lookup(back.encoding).name != codecs.lookup(like.encoding).name:
        changes.append(f"Python reads it as {back.encoding}, not {like.encoding} (a coding cookie changed)")
    if back.bom != like.bom:
        changes.append("BOM " + ("added" if back.bom else "removed"))
    if back.newline != like.newline:
        changes.append(f"line endings {_NEWLINE_NAMES[like.newline]} -> {_NEWLINE_NAMES[back.newline]}")
    if not changes and back.source != split_newlines(join_newlines(text, like.newline))[0]:
        changes.append("the text does not read back unchanged")
    return "; ".join(changes) or None
