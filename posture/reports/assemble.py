"""Join a report's parts into one PDF and lay its footers over the pages (pypdf).

The parts are separate PDFs; each defines named destinations for its anchors
(``summary``, ``host-12``…). The front part (cover and contents) is joined last, at the
start: pypdf keeps the first destination of each name, so its contents links, written as
named destinations, resolve to the anchors of the parts joined before it, and the empty
targets it carries for WeasyPrint's sake are dropped.

The footers ("Page 3 of 219") are one small PDF rendered once the page count is known,
each page of it laid over its page as a form XObject: the content streams stay as
WeasyPrint compressed them, and the footer font is stored once.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, StreamObject

FOOTER = NameObject("/PostureFooter")


def join(front: bytes, rest: Sequence[bytes]) -> PdfWriter:
    writer = PdfWriter()
    for part in rest:
        writer.append(PdfReader(io.BytesIO(part)))
    writer.merge(0, PdfReader(io.BytesIO(front)))
    return writer


def lay_footers(writer: PdfWriter, footers: bytes) -> bytes:
    """Lay page i of ``footers`` over page i of ``writer``; returns the finished PDF."""
    reader = PdfReader(io.BytesIO(footers))
    if len(reader.pages) != len(writer.pages):
        raise ValueError(f"{len(reader.pages)} footer pages for {len(writer.pages)} pages")
    # WeasyPrint leaves its page transform in force at the end of a page: the page's own
    # streams go between "q" and "Q", so the footer is drawn in the page's default space.
    save, restore_and_draw = writer._add_object(_stream(b"q\n")), writer._add_object(_stream(b"\nQ q /PostureFooter Do Q\n"))
    for page, footer in zip(writer.pages, reader.pages, strict=True):
        form = _stream(footer["/Contents"].get_object().get_data() if "/Contents" in footer else b"")
        form.update(
            {
                NameObject("/Type"): NameObject("/XObject"),
                NameObject("/Subtype"): NameObject("/Form"),
                NameObject("/BBox"): ArrayObject(footer.mediabox),
                # Cloned through the writer: the font object shared by every footer page is copied once.
                NameObject("/Resources"): footer["/Resources"].clone(writer),
            }
        )
        # WeasyPrint shares one resource dictionary between a part's pages: each page gets
        # its own (the fonts and images in it stay shared), naming its own footer.
        resources = DictionaryObject(page.get("/Resources", DictionaryObject()).get_object())
        xobjects = DictionaryObject(resources.get("/XObject", DictionaryObject()).get_object())
        xobjects[FOOTER] = writer._add_object(form)
        resources[NameObject("/XObject")] = xobjects
        page[NameObject("/Resources")] = resources
        contents = page.get(NameObject("/Contents"))
        streams = list(contents.get_object()) if isinstance(contents.get_object(), ArrayObject) else ([contents] if contents is not None else [])
        page[NameObject("/Contents")] = ArrayObject([save, *streams, restore_and_draw])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _stream(data: bytes) -> StreamObject:
    stream = DecodedStreamObject()
    stream.set_data(data)
    return stream
