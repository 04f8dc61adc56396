"""The example project's docs pages: its small Markdown renderer escapes
everything and turns the repository's Markdown links into page links."""

from __future__ import annotations

import re

from docsync_project.markdown import page_url, render_markdown
from tests.snippets import ROOT, markdown_files


def test_markdown_renders_blocks_and_escapes():
    html = render_markdown(
        "# Title <x>\n\nSome `code <b>` and **bold** [a](protocol.md#errors).\n\n"
        "- one\n- two\n\n| a | b |\n| --- | --- |\n| <i> | `2` |\n\n```py\nx = '<s>'\n```\n"
    )
    assert '<h1 id="title-x">Title &lt;x&gt;</h1>' in html
    assert "<code>code &lt;b&gt;</code>" in html and "<strong>bold</strong>" in html
    assert '<a href="/docs/protocol#errors">a</a>' in html
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert "<td>&lt;i&gt;</td><td><code>2</code></td>" in html
    assert "<pre><code>x = &#x27;&lt;s&gt;&#x27;</code></pre>" in html
    assert "<script" not in render_markdown("<script>alert(1)</script>")
    assert render_markdown("<!-- snippet: python -->\n```\nx\n```") == "<pre><code>x</code></pre>"


def test_links_between_repository_files_become_pages():
    assert page_url("settings.md", "docs/README.md") == "/docs/settings"
    assert page_url("../README.md#production", "docs/deployment.md") == (
        "/docs/project-readme#production"
    )
    assert page_url("docs/clients.md", "README.md") == "/docs/clients"
    assert page_url("#x", "README.md") == "#x"
    assert page_url("examples/quickstart_client.py", "README.md") is None


def test_every_page_link_of_the_docs_points_at_a_page():
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")} | {"project-readme"}
    for path in markdown_files():
        source = str(path.relative_to(ROOT))
        html = render_markdown(path.read_text(encoding="utf-8"), source)
        for name in re.findall(r'href="/docs/([\w-]+)', html):
            assert name in pages, f"{source} links /docs/{name}"
