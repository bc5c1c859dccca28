"""Griffe extension: chainlab's docstrings as Google style with doctest examples.

The docstrings follow the Napoleon reading of Google style, in which doctest lines
(``>>>``) are examples wherever they stand and Sphinx roles (``:func:`name```) name
other objects. Griffe would read doctest output such as ``[1.0, 2.0]`` as Markdown
links and leave roles as text, so before parsing, this extension fences each doctest
block as ``pycon`` code, turns each role into inline code (``~a.b.c`` shows ``c``) and
fences reStructuredText simple tables, whose ``====`` rules Markdown would read as
headings.
"""

import re

import griffe

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc):`(~?)([^`]+)`")
_TABLE_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _role_as_code(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"``{target.rsplit('.', 1)[-1] if tilde else target}``"


def _fence_doctests(lines: list[str]) -> list[str]:
    """Each run of a ``>>>`` line and the non-blank lines after it, fenced."""
    out, fence = [], None
    for line in lines:
        ends_block = not line.strip() or len(_indent(line)) < len(fence or "")
        if fence is not None and ends_block:
            out.append(f"{fence}```")
            fence = None
        if fence is None and line.lstrip().startswith(">>>"):
            fence = _indent(line)
            out.append(f"{fence}```pycon")
        out.append(line)
    return out + ([f"{fence}```"] if fence is not None else [])


def _fence_tables(lines: list[str]) -> list[str]:
    """reStructuredText simple tables (three ``====`` rules) as fenced text."""
    out, rules_seen = [], 0
    for line in lines:
        is_rule = bool(_TABLE_RULE.match(line))
        if is_rule and rules_seen == 0:
            out.append(f"{_indent(line)}```text")
        out.append(line)
        if is_rule:
            rules_seen = (rules_seen + 1) % 3
            if rules_seen == 0:
                out.append(f"{_indent(line)}```")
    return out


def as_markdown_google(text: str) -> str:
    """The docstring ``text`` as griffe's Google parser and Markdown expect it."""
    lines = _fence_tables(_fence_doctests(text.split("\n")))
    return _ROLE.sub(_role_as_code, "\n".join(lines))


class NapoleonDocstrings(griffe.Extension):
    """Rewrites each docstring before griffe parses it (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = as_markdown_google(obj.docstring.value)
