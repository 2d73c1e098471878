"""PubMed XML: `PubmedArticleSet` (E-utilities efetch, the annual baseline and daily update
files `pubmedNNnNNNN.xml.gz`) and the older `MedlineCitationSet`, streamed with lxml's
iterparse so a file of 30,000 records never sits in memory whole.

Element names follow NLM's PubMed DTD (pubmed_250101.dtd): `PubmedArticle/MedlineCitation`
with `PMID` and `Article/{ArticleTitle, Abstract/AbstractText[@Label], ELocationID}`,
`PubmedData/ArticleIdList/ArticleId[@IdType]`; `PubmedBookArticle/BookDocument`; and
`DeleteCitation/PMID` in update files (skipped and counted).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from lxml import etree

from preprocessing.readers.records import DamagedInput, ReadReport, Record
from preprocessing.readers.text import finish, unreadable

_RECORDS = ("PubmedArticle", "PubmedBookArticle", "DeleteCitation", "MedlineCitation")


def _text(element: etree._Element | None) -> str:
    """All text under `element`, markup (<i>, <sup>, MathML) reduced to its text."""
    return "" if element is None else " ".join("".join(element.itertext()).split())


def _title(element: etree._Element | None) -> str:
    """PubMed puts translated titles in brackets: `[Vaccines are drugs].` -> the title."""
    title = _text(element)
    if title.startswith("[") and "]" in title:
        inner, _, tail = title[1:].rpartition("]")
        if not tail.strip(" .") and "[" not in inner:
            return inner + (tail.strip() and ".")
    return title


def _abstract(abstract: etree._Element | None) -> str:
    """Structured abstracts keep their section labels: `BACKGROUND: ... METHODS: ...`."""
    if abstract is None:
        return ""
    parts = []
    for section in abstract.iterfind("AbstractText"):
        text, label = _text(section), section.get("Label")
        if text:
            parts.append(f"{label}: {text}" if label else text)
    return " ".join(parts)


def _doi(record: etree._Element) -> str | None:
    """The article's own DOI: its PubmedData (or BookDocument) id list, else its ELocationID;
    never one of `ReferenceList`'s, which name the works it cites."""
    for path in ("PubmedData/ArticleIdList/ArticleId[@IdType='doi']",
                 "BookDocument/ArticleIdList/ArticleId[@IdType='doi']",
                 "PubmedBookData/ArticleIdList/ArticleId[@IdType='doi']",
                 "MedlineCitation/Article/ELocationID[@EIdType='doi']",
                 "Article/ELocationID[@EIdType='doi']"):
        found = record.find(path)
        if found is not None and _text(found):
            return _text(found)
    return None


def _record(element: etree._Element, report: ReadReport, position: int) -> Record:
    """The record of one PubmedArticle, PubmedBookArticle or MedlineCitation; one lacking the
    elements every record has (PMID, Article or BookDocument) is a record with a problem."""
    try:
        return _parse_record(element, report)
    except AttributeError:  # a find() that came back None
        pmid = _text(element.find(".//PMID")) or f"record-{position}"
        return unreadable(report, pmid, f"{element.tag} {pmid} lacks the PMID, Article or "
                          "BookDocument element every PubMed record has")


def _parse_record(element: etree._Element, report: ReadReport) -> Record:
    if element.tag == "PubmedBookArticle":
        doc = element.find("BookDocument")
        title = doc.find("ArticleTitle")
        if title is None:
            title = doc.find("Book/BookTitle")
        pmid = _text(doc.find("PMID"))
        return finish(report, pmid, _title(title), _abstract(doc.find("Abstract")), pmid=pmid,
                      doi=_doi(element))
    citation = element if element.tag == "MedlineCitation" else element.find("MedlineCitation")
    pmid = _text(citation.find("PMID"))
    article = citation.find("Article")
    return finish(report, pmid, _title(article.find("ArticleTitle")),
                  _abstract(article.find("Abstract")), pmid=pmid, doi=_doi(element))


def read_pubmed_xml(stream: BinaryIO, report: ReadReport) -> Iterator[Record]:
    """Records of a PubMed XML stream, in file order. Where the XML stops being well formed (a
    cut download, a damaged file, text or a second document after the root) every record
    before the break is kept and one record with a problem says where it broke: the rest of
    the file cannot be read. Raises ValueError when it breaks before the first record (not
    PubMed XML at all)."""
    report.encoding = "utf-8"  # XML declares its own; PubMed's is UTF-8
    # No DTD loading and no entity expansion from the network (resolve_entities=False).
    parser = etree.XMLPullParser(events=("end",), tag=_RECORDS, resolve_entities=False,
                                 no_network=True, huge_tree=True)
    read = (report.records, report.skipped["deleted citation"])
    try:
        yield from _records(_elements(stream, parser), report)
    except (etree.XMLSyntaxError, DamagedInput) as err:
        if isinstance(err, DamagedInput):
            where, line = str(err), "eof"
            if not err.sound:  # a CRC is checked at the end, after the records were read
                where += " (the records before it may hold wrong text too)"
        else:
            line = err.position[0] if err.position and err.position[0] else "eof"
            where = f"the XML is not well formed at line {line} ({err.msg}){_hint(err.msg)}"
        if (report.records, report.skipped["deleted citation"]) == read:
            raise ValueError(f"{where}: no record could be read") from None
        yield unreadable(report, f"xml-error-line-{line}", f"{where}; the records from about "
                         "there on cannot be read")


def _hint(message: str) -> str:
    joined = ("Extra content at the end" in message
              or "XML declaration allowed only at the start" in message)
    return ("; two XML files joined into one? Give each its own file or put them in a folder"
            if joined else "")


def _elements(stream: BinaryIO, parser: etree.XMLPullParser) -> Iterator[etree._Element]:
    """The record elements as the parser completes them, fed 64 KiB at a time. A syntax error
    met while feeding is raised only after every record completed before it was handed over
    (lxml's iterparse drops the records queued from the chunk holding the error). One met at
    the end (a cut file) is raised at once: closing ends the open elements, so the events it
    queues are partial records."""
    while chunk := stream.read(1 << 16):
        try:
            parser.feed(chunk)
        finally:
            yield from (element for _, element in parser.read_events())
    parser.close()
    yield from (element for _, element in parser.read_events())


def _records(elements: Iterator[etree._Element], report: ReadReport) -> Iterator[Record]:
    for position, element in enumerate(elements):
        parent = element.getparent()
        if element.tag == "MedlineCitation" and parent is not None and \
                parent.tag != "MedlineCitationSet":
            continue  # inside a PubmedArticle: read with it
        if element.tag == "DeleteCitation":
            report.skipped["deleted citation"] += len(element.findall("PMID"))
        else:
            yield _record(element, report, position)
        # Free what was read: the element and the siblings before it.
        element.clear(keep_tail=False)
        while parent is not None and element.getprevious() is not None:
            del parent[0]
