"""A small HTML reader for the report tests (stdlib html.parser, no browser)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser

from PIL import Image


@dataclass
class ParsedSection:
    id: str
    text: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)
    unavailable: str | None = None


class ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, ParsedSection] = {}
        self.order: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.current: ParsedSection | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_na = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "section":
            self.current = ParsedSection(str(attributes.get("id")))
            self.sections[self.current.id] = self.current
            self.order.append(self.current.id)
        elif self.current is None:
            return
        elif tag == "img":
            self.current.images.append(str(attributes.get("src")))
        elif tag == "table":
            self.current.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "p" and attributes.get("class") == "na":
            self._in_na = True
            self.current.unavailable = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.current = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self.current is not None:
            self.current.tables[-1].append(self._row)
            self._row = None
        elif tag == "p" and self._in_na and self.current is not None:
            self._in_na = False
            text = self.current.unavailable or ""
            self.current.unavailable = text.removeprefix("not available: ")

    def handle_data(self, data: str) -> None:
        if self.current is None:
            return
        self.current.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_na:
            self.current.unavailable = (self.current.unavailable or "") + data


def parse_report(html: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(html)
    parser.close()
    return parser


def decode_png(src: str) -> Image.Image:
    """The image of a ``data:image/png;base64,...`` URI, fully decoded."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :], validate=True)))
    image.load()
    return image
