"""Just enough Markdown for the pages of ``docs/``: headings, paragraphs, lists,
tables, fenced code, inline code, emphasis and links. Everything is escaped;
links between the repository's Markdown files become links between pages.
"""

from __future__ import annotations

import posixpath
import re
from html import escape

_INLINE = re.compile(
    r"`([^`]+)`"  # code
    r"|\*\*(.+?)\*\*"  # strong
    r"|\[([^\]]+)\]\(([^)\s]+)\)"  # [label](target)
    r"|(?<![\w*])\*([^*\s][^*]*)\*"  # emphasis
)
_FENCE = re.compile(r"^```")
_COMMENT = re.compile(r"^\s*<!--.*-->\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_ITEM = re.compile(r"^(\s*)([-*]|\d+\.)\s+(.*)$")


def slugify(text: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def page_url(target: str, source: str) -> str | None:
    """The URL of the page for a relative link from repository file ``source``."""
    path, _, anchor = target.partition("#")
    suffix = f"#{anchor}" if anchor else ""
    if not path:
        return suffix
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
    if resolved == "README.md":
        return f"/docs/project-readme{suffix}"
    match = re.fullmatch(r"docs/([A-Za-z0-9_-]+)\.md", resolved)
    return f"/docs/{match.group(1)}{suffix}" if match else None


def _inline(text: str, source: str) -> str:
    out, pos = [], 0
    for match in _INLINE.finditer(text):
        out.append(escape(text[pos : match.start()]))
        code, strong, label, target, em = match.groups()
        if code is not None:
            out.append(f"<code>{escape(code)}</code>")
        elif strong is not None:
            out.append(f"<strong>{_inline(strong, source)}</strong>")
        elif em is not None:
            out.append(f"<em>{_inline(em, source)}</em>")
        else:
            external = re.match(r"[a-z]+://", target)
            url = target if external else page_url(target, source)
            inner = _inline(label, source)
            if url is None:  # a file of the repository that is not a page
                out.append(f'<span title="{escape(target)}">{inner}</span>')
            else:
                out.append(f'<a href="{escape(url)}">{inner}</a>')
        pos = match.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def _table(rows: list[str], source: str) -> str:
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    head, body = cells[0], cells[2:]
    html = ["<table><thead><tr>"]
    html += [f"<th>{_inline(cell, source)}</th>" for cell in head]
    html.append("</tr></thead><tbody>")
    for row in body:
        html.append("<tr>" + "".join(f"<td>{_inline(c, source)}</td>" for c in row) + "</tr>")
    html.append("</tbody></table>")
    return "".join(html)


def _list(items: list[tuple[bool, str]], source: str) -> str:
    tag = "ol" if items[0][0] else "ul"
    body = "".join(f"<li>{_inline(text, source)}</li>" for _, text in items)
    return f"<{tag}>{body}</{tag}>"


def render_markdown(text: str, source: str = "docs/README.md") -> str:
    """Return HTML for ``text``, the contents of repository file ``source``."""
    lines = text.splitlines()
    html: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _COMMENT.match(line):  # e.g. the snippet markers of tests/snippets.py
            i += 1
        elif _FENCE.match(line):
            end = i + 1
            while end < len(lines) and not _FENCE.match(lines[end]):
                end += 1
            html.append(f"<pre><code>{escape(chr(10).join(lines[i + 1 : end]))}</code></pre>")
            i = end + 1
        elif heading := _HEADING.match(line):
            level, title = len(heading.group(1)), heading.group(2).strip()
            html.append(f'<h{level} id="{slugify(title)}">{_inline(title, source)}</h{level}>')
            i += 1
        elif line.lstrip().startswith("|"):
            end = i
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            html.append(_table(lines[i:end], source))
            i = end
        elif _ITEM.match(line):
            items: list[tuple[bool, str]] = []
            while i < len(lines) and lines[i].strip():
                item = _ITEM.match(lines[i])
                if item:
                    items.append((item.group(2)[0].isdigit(), item.group(3)))
                elif items:  # a continuation line of the item
                    items[-1] = (items[-1][0], f"{items[-1][1]} {lines[i].strip()}")
                i += 1
            html.append(_list(items, source))
        elif line.strip():
            end = i
            while end < len(lines) and lines[end].strip() and not _starts_block(lines[end]):
                end += 1
            end = max(end, i + 1)
            html.append(f"<p>{_inline(' '.join(s.strip() for s in lines[i:end]), source)}</p>")
            i = end
        else:
            i += 1
    return "\n".join(html)


def _starts_block(line: str) -> bool:
    return bool(
        _FENCE.match(line)
        or _HEADING.match(line)
        or line.lstrip().startswith("|")
        or _ITEM.match(line)
    )
