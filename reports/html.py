"""One self-contained HTML file per report, rendered from its markdown: ``report.html`` and friends.

``write_html(markdown)`` (``python -m reports html FILE.md...``) renders a run report
(``report.md``), a capacity report (``capacity.md``) or the go/no-go document with
markdown-it (CommonMark plus tables, raw HTML off) into ``<stem>.html`` beside it. The
markdown stays the one source of truth; the HTML adds only presentation:

- a coloured verdict banner at the top, read from the document's top-level
  ``**Verdict: X**`` line (GO green, NO-GO red, anything else amber; no verdict line, or
  two that disagree, is amber and says so);
- result cells (FAIL, PASS, PASS (lab only), NOT RUN, MANUAL, SIGNED OFF) carry the
  CSS class ``result result-<kind>`` by their text;
- every local image is embedded as a ``data:`` URI: a missing or unreadable image, or a
  remote one, is a ReportError naming it, never a broken picture. Links to other local
  files stay relative links into the run folder (rewritten when the HTML is written to
  another folder), as the footer says;
- CSS for the screen and for print; no script, no external resource, and a
  Content-Security-Policy that forbids both.

Everything from data is escaped: raw HTML in the markdown is shown as text. The one
exception is the line break tag ``<br>`` (the go/no-go tables separate evidence with it),
which becomes a line break and nothing else.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from common.files import replace_text
from reports.errors import ReportError

__all__ = ["HTML_SUFFIX", "RESULT_CLASSES", "render_html", "verdict_of", "write_html"]

HTML_SUFFIX = ".html"

#: A result cell's whole text (upper case) -> its CSS class.
RESULT_CLASSES = {
    "FAIL": "result-fail",
    "PASS": "result-pass",
    "PASS (LAB ONLY)": "result-lab-only",
    "NOT RUN": "result-not-run",
    "MANUAL": "result-manual",
    "SIGNED OFF": "result-signed-off",
}

_VERDICT_CLASSES = {"GO": "verdict-go", "NO-GO": "verdict-nogo"}
_VERDICT_PREFIX = "Verdict:"
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
# Magic bytes -> MIME type of the images a report may embed.
_IMAGE_TYPES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

STYLE = """\
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1f2328; background: #fff; margin: 0 auto; max-width: 1180px; padding: 0 24px 32px; }
main { overflow-wrap: break-word; }
h1 { font-size: 1.7em; margin: 0.6em 0 0.4em; }
h2 { font-size: 1.35em; margin-top: 1.6em; border-bottom: 1px solid #d1d9e0; padding-bottom: 0.2em; }
h3 { font-size: 1.1em; margin-top: 1.3em; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f6f8fa;
  padding: 0.1em 0.3em; border-radius: 4px; }
pre code { display: block; padding: 0.8em; overflow-x: auto; }
a { color: #0969da; }
blockquote { margin: 1em 0; padding: 0.5em 1em; border-left: 4px solid #bf8700; background: #fff8c5; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; display: block; overflow-x: auto; }
th, td { border: 1px solid #d1d9e0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
img { max-width: 100%; height: auto; border: 1px solid #d1d9e0; }
.verdict { margin: 16px 0 8px; padding: 14px 20px; border-radius: 6px; border: 4px solid;
  font-size: 1.25em; }
.verdict-value { font-size: 1.6em; margin: 0 0.4em; letter-spacing: 0.03em; }
.verdict-label { text-transform: uppercase; font-size: 0.8em; letter-spacing: 0.08em; }
.verdict-detail { display: block; font-size: 0.75em; margin-top: 4px; }
.verdict-go { background: #1a7f37; border-color: #116329; color: #fff; }
.verdict-nogo { background: #cf222e; border-color: #82071e; color: #fff; }
.verdict-other { background: #ffd33d; border-color: #9a6700; color: #1f2328; }
td.result { font-weight: 600; white-space: nowrap; }
td.result-fail { background: #ffebe9; color: #82071e; font-weight: 800; box-shadow: inset 4px 0 #cf222e; }
td.result-pass { background: #dafbe1; color: #116329; }
td.result-lab-only { background: #fff8c5; color: #7d4e00; }
td.result-not-run { background: #eaeef2; color: #424a53; font-style: italic; }
td.result-manual { background: #ddf4ff; color: #0a3069; }
td.result-signed-off { background: #fbefff; color: #6639ba; }
footer { margin-top: 2.5em; padding-top: 0.8em; border-top: 1px solid #d1d9e0; color: #59636e;
  font-size: 0.85em; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  a { color: inherit; }
  .verdict { background: none !important; color: #000 !important; border-width: 5px;
    break-inside: avoid; }
  .verdict-go { border-style: solid; }
  .verdict-nogo { border-style: double; border-width: 8px; }
  .verdict-other { border-style: dashed; }
  table { display: table; width: 100%; font-size: 8.5pt; }
  thead { display: table-header-group; }
  tr, img, blockquote, .verdict { break-inside: avoid; page-break-inside: avoid; }
  h1, h2, h3 { break-after: avoid; page-break-after: avoid; }
  img { max-width: 100% !important; max-height: 240mm; border: none; }
  td.result { background: none !important; color: #000 !important; box-shadow: none; }
  td.result-fail { text-decoration: underline; text-decoration-thickness: 2px; }
  blockquote { background: none; }
  code { background: none; padding: 0; }
}
"""


def _br_tag(state: StateInline, silent: bool) -> bool:
    """Inline rule: the exact tag ``<br>`` (or ``<br/>``) is a line break; any other HTML stays text."""
    if state.src[state.pos] != "<":
        return False
    match = _BR.match(state.src, state.pos)
    if match is None:
        return False
    if not silent:
        state.push("hardbreak", "br", 0)
    state.pos = match.end()
    return True


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.inline.ruler.before("autolink", "br_tag", _br_tag)
    return md


def _text(children: Sequence[Token]) -> str:
    """The visible text of inline tokens, markup left out, whitespace collapsed."""
    parts = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(_text(child.children or []))
    return " ".join("".join(parts).split())


def _plain(token: Token) -> str:
    """The visible text of an inline token."""
    return _text(token.children or [])


def _verdicts(tokens: Sequence[Token]) -> list[tuple[str, str]]:
    """Every top-level paragraph that opens with ``**Verdict: X**``: (X, the rest of the paragraph)."""
    found = []
    for index, token in enumerate(tokens[:-1]):
        inline = tokens[index + 1]
        if token.type != "paragraph_open" or token.level != 0 or inline.type != "inline":
            continue
        children = [c for c in inline.children or [] if not (c.type == "text" and not c.content)]
        if len(children) < 3 or children[0].type != "strong_open" or children[2].type != "strong_close":
            continue
        label = children[1]
        if label.type != "text" or not label.content.startswith(_VERDICT_PREFIX):
            continue
        verdict = label.content[len(_VERDICT_PREFIX) :].strip()
        if verdict:
            found.append((verdict, _text(children[3:]).lstrip(" :")))
    return found


def verdict_of(text: str) -> str | None:
    """The verdict a markdown document states (``**Verdict: X**`` at top level), or None."""
    found = {v for v, _ in _verdicts(_markdown().parse(text))}
    return found.pop() if len(found) == 1 else None


def _banner(tokens: Sequence[Token]) -> str:
    found = _verdicts(tokens)
    verdicts = list(dict.fromkeys(v for v, _ in found))
    if len(verdicts) == 1:
        verdict, detail = verdicts[0], found[0][1]
        css = _VERDICT_CLASSES.get(verdict, "verdict-other")
    elif verdicts:
        verdict, css = "cannot tell", "verdict-other"
        detail = "the document states conflicting verdicts: " + ", ".join(verdicts)
    else:
        verdict, css = "not stated", "verdict-other"
        detail = "this document has no verdict line; read its first section"
    if detail.endswith(":"):  # the verdict line introduces a list (the violations): it follows
        detail = f"{detail[:-1]}, listed below"
    shown = f'<span class="verdict-detail">{html.escape(detail)}</span>' if detail else ""
    return (
        f'<header class="verdict {css}" role="status"><span class="verdict-label">Verdict</span> '
        f'<strong class="verdict-value">{html.escape(verdict)}</strong>{shown}</header>'
    )


def _mark_results(tokens: Sequence[Token]) -> None:
    """Give each table cell whose whole text is a result its ``result result-<kind>`` classes."""
    for index, token in enumerate(tokens[:-1]):
        if token.type != "td_open" or tokens[index + 1].type != "inline":
            continue
        css = RESULT_CLASSES.get(_plain(tokens[index + 1]).upper())
        if css:
            token.attrSet("class", f"result {css}")


def _inline_children(tokens: Sequence[Token]) -> list[Token]:
    out: list[Token] = []
    for token in tokens:
        for child in token.children or []:
            out.append(child)
            out += _inline_children([child])
    return out


def _local_path(url: str, base: Path) -> Path:
    return base / unquote(urlsplit(url).path)


def _image_type(data: bytes, path: Path) -> str:
    for magic, mime in _IMAGE_TYPES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ReportError(
        f"{path} is not a PNG, JPEG, GIF or WebP image; rebuild the report that refers to it, "
        "or replace the file"
    )


def _embed(token: Token, base: Path) -> None:
    src = str(token.attrGet("src") or "")
    if src.startswith("data:"):
        return
    if _SCHEME.match(src) or src.startswith("//"):
        raise ReportError(
            f"image {src} is not a local file, so it cannot be embedded in a self-contained page; "
            "copy the image into the report's folder and refer to it by a relative path"
        )
    path = _local_path(src, base)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReportError(
            f"image {path} is missing; rebuild the report (python -m reports build RUN_DIR) "
            "or put the file back, then render the HTML again"
        ) from None
    except OSError as exc:
        raise ReportError(f"image {path} cannot be read ({exc.strerror or exc}); check the file") from None
    encoded = base64.b64encode(data).decode("ascii")
    token.attrSet("src", f"data:{_image_type(data, path)};base64,{encoded}")


def _relink(token: Token, base: Path, out_dir: Path | None) -> None:
    """A local link: to the HTML form of a Markdown report when it exists, re-based to ``out_dir``."""
    href = str(token.attrGet("href") or "")
    if _SCHEME.match(href) or href.startswith("//"):
        token.attrSet("rel", "noopener noreferrer")
        return
    if not href or href.startswith(("#", "/")):
        return
    parts = urlsplit(href)
    target = _local_path(href, base)
    as_html = target.with_suffix(HTML_SUFFIX) if target.suffix == ".md" else None
    if as_html is not None and as_html.is_file():
        target = as_html
    elif out_dir is None:
        return
    moved = os.path.relpath(target, out_dir or base).replace(os.sep, "/")
    if parts.path.endswith("/") and not moved.endswith("/"):
        moved += "/"
    token.attrSet("href", quote(moved) + (f"#{parts.fragment}" if parts.fragment else ""))


def _footer(source: str) -> str:
    return (
        f"<footer>Rendered from <code>{html.escape(source)}</code>, which holds the same text. Plots are "
        "embedded in this file; links point into the run folder, relative to this file, so keep this "
        "file in its folder for them to work.</footer>"
    )


def render_html(
    text: str, base: Path, title: str, *, out_dir: Path | None = None, source: str = "the markdown"
) -> str:
    """The whole HTML page for the markdown ``text``.

    ``base`` is the folder the markdown's relative paths start from (its own folder):
    images there are embedded, and a missing one raises ReportError naming it. With
    ``out_dir`` (the folder the page will be written to, when it is not ``base``),
    relative links are rewritten to point at the same files from there. ``source`` names
    the markdown in the footer.
    """
    md = _markdown()
    tokens = md.parse(text)
    base = Path(base).resolve()
    folder = Path(out_dir).resolve() if out_dir is not None and Path(out_dir).resolve() != base else None
    banner = _banner(tokens)
    _mark_results(tokens)
    for child in _inline_children(tokens):
        if child.type == "image":
            _embed(child, base)
        elif child.type == "link_open":
            _relink(child, base, folder)
    body = md.renderer.render(tokens, md.options, {})
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n"
        f"{banner}\n<main>\n{body}</main>\n{_footer(source)}\n</body>\n</html>\n"
    )


def _title(text: str, fallback: str) -> str:
    tokens = _markdown().parse(text)
    for index, token in enumerate(tokens[:-1]):
        if token.type == "heading_open" and token.tag == "h1":
            return _plain(tokens[index + 1]) or fallback
    return fallback


def write_html(markdown: Path, out: Path | None = None) -> Path:
    """Render ``markdown`` into ``out`` (default: beside it, ``.html`` suffix); returns ``out``.

    ReportError (one line naming the file and the fix) for an unreadable markdown file, a
    missing image or an output that cannot be written.
    """
    source = Path(markdown)
    target = Path(out) if out is not None else source.with_suffix(HTML_SUFFIX)
    if target.resolve() == source.resolve():
        raise ReportError(f"{source}: the HTML would overwrite its markdown; pass an output ending in .html")
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(
            f"{source} does not exist; pass a report's markdown file (e.g. report.md)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {source} ({exc}); pass a UTF-8 markdown report") from None
    if not target.parent.is_dir():
        raise ReportError(f"folder {target.parent} does not exist; create it or pass another output")
    page = render_html(
        text,
        source.parent,
        _title(text, source.stem),
        out_dir=target.parent,
        source=source.name,
    )
    try:
        return replace_text(target, page)
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc.strerror or exc}; check the folder") from None
