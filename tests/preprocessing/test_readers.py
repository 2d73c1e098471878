"""Readers on small files written from each format's public description (invented records)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pandas as pd
import pytest

from preprocessing.readers import InputTooLarge, as_file, detect_format, read_records

PUBMED_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN"
 "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">
<PubmedArticleSet>
 <PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
   <PMID Version="1">1000001</PMID>
   <Article PubModel="Print">
    <ArticleTitle>Growth of <i>in vitro</i> tumour spheroids under CO<sub>2</sub></ArticleTitle>
    <Abstract>
     <AbstractText Label="BACKGROUND">Spheroids model tumours.</AbstractText>
     <AbstractText Label="METHODS" NlmCategory="METHODS">We grew 10<sup>6</sup> cells
      (<mml:math xmlns:mml="http://www.w3.org/1998/Math/MathML"><mml:mi>p</mml:mi><mml:mo>&lt;</mml:mo><mml:mn>0.05</mml:mn></mml:math>).</AbstractText>
    </Abstract>
    <ELocationID EIdType="doi" ValidYN="Y">10.9999/elocation.1</ELocationID>
   </Article>
  </MedlineCitation>
  <PubmedData>
   <ArticleIdList>
    <ArticleId IdType="pubmed">1000001</ArticleId>
    <ArticleId IdType="doi">10.9999/example.1</ArticleId>
   </ArticleIdList>
  </PubmedData>
 </PubmedArticle>
 <PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
   <PMID Version="1">1000002</PMID>
   <Article PubModel="Print">
    <ArticleTitle>[Walking programmes for older adults].</ArticleTitle>
   </Article>
  </MedlineCitation>
 </PubmedArticle>
 <PubmedBookArticle>
  <BookDocument>
   <PMID Version="1">1000003</PMID>
   <ArticleTitle>Screening guidance chapter</ArticleTitle>
   <Abstract><AbstractText>A chapter on screening.</AbstractText></Abstract>
  </BookDocument>
 </PubmedBookArticle>
 <DeleteCitation>
  <PMID Version="1">999</PMID>
  <PMID Version="1">998</PMID>
 </DeleteCitation>
</PubmedArticleSet>
"""

MEDLINE_CITATION_SET = """<?xml version="1.0"?>
<MedlineCitationSet>
 <MedlineCitation Owner="NLM" Status="MEDLINE">
  <PMID>2000001</PMID>
  <Article><ArticleTitle>An older record</ArticleTitle>
   <Abstract><AbstractText>Its abstract.</AbstractText></Abstract></Article>
 </MedlineCitation>
</MedlineCitationSet>
"""

NBIB = """PMID- 3000001
OWN - NLM
TI  - A title that wraps over
      two lines
AB  - OBJECTIVE: To test a reader. METHODS: We read it.
LID - 10.9999/nbib.1 [doi]
FAU - Example, Ada

PMID- 3000002
TI  - Letter without an abstract
PT  - Letter
"""

RIS = """TY  - JOUR
T1  - First reference title
AB  - First reference abstract.
DO  - 10.9999/ris.1
AN  - 4000001
ER  - 

TY  - JOUR
TI  - Second reference title
N2  - Second abstract.
ID  - ref-2
ER  - 
"""

PUBMED_CSV = (
    "PMID,Title,Authors,Citation,First Author,Journal/Book,Publication Year,Create Date,"
    "PMCID,NIHMS ID,DOI\n"
    '5000001,"Adjuvant therapy in a resected tumour, a trial.","Example A, Sample B",'
    '"J Example. 2020;1:1.",Example A,J Example,2020,2020/01/01,,,10.9999/csv.1\n'
    "5000002,Walking and sleep in students.,Example C,J Other. 2021.,Example C,J Other,2021,"
    "2021/02/02,,,\n"
)


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_pubmed_xml(tmp_path: Path, gz: bool) -> None:
    raw = PUBMED_XML.encode()
    path = _write(tmp_path, "pubmed26n0001.xml" + (".gz" if gz else ""),
                  gzip.compress(raw) if gz else raw)
    records = read_records(path)
    got = list(records)
    assert records.format == "pubmed-xml"
    assert [r.pmid for r in got] == ["1000001", "1000002", "1000003"]
    first = got[0]
    assert first.title == "Growth of in vitro tumour spheroids under CO2"
    assert first.abstract == ("BACKGROUND: Spheroids model tumours. METHODS: We grew 106 cells "
                              "(p<0.05).")
    assert first.doi == "10.9999/example.1"
    assert got[1].title == "Walking programmes for older adults."  # translation brackets off
    assert got[1].abstract == "" and got[1].problem is None
    assert (got[2].title, got[2].abstract) == ("Screening guidance chapter",
                                               "A chapter on screening.")
    assert records.report.skipped == {"deleted citation": 2}
    assert (records.report.records, records.report.title_only) == (3, 1)


def test_medline_citation_set(tmp_path: Path) -> None:
    got = list(read_records(_write(tmp_path, "old.xml", MEDLINE_CITATION_SET)))
    assert [(r.pmid, r.title, r.abstract) for r in got] == [
        ("2000001", "An older record", "Its abstract.")]


def test_medline_nbib(tmp_path: Path) -> None:
    records = read_records(_write(tmp_path, "export.nbib", NBIB))
    got = list(records)
    assert records.format == "medline"
    assert [r.id for r in got] == ["3000001", "3000002"]
    assert got[0].title == "A title that wraps over two lines"
    assert got[0].abstract.startswith("OBJECTIVE: To test a reader.")
    assert got[0].doi == "10.9999/nbib.1"
    assert got[1].abstract == "" and records.report.title_only == 1


def test_ris(tmp_path: Path) -> None:
    records = read_records(_write(tmp_path, "refs.ris", RIS))
    got = list(records)
    assert records.format == "ris"
    assert [(r.id, r.pmid, r.doi) for r in got] == [("4000001", "4000001", "10.9999/ris.1"),
                                                     ("ref-2", None, None)]
    assert [r.title for r in got] == ["First reference title", "Second reference title"]
    assert got[1].abstract == "Second abstract."


def test_pubmed_csv_download_is_title_only(tmp_path: Path) -> None:
    records = read_records(_write(tmp_path, "csv-example.csv", PUBMED_CSV))
    got = list(records)
    assert [(r.id, r.pmid, r.doi) for r in got] == [("5000001", "5000001", "10.9999/csv.1"),
                                                     ("5000002", "5000002", None)]
    assert got[0].title == "Adjuvant therapy in a resected tumour, a trial."
    assert all(r.abstract == "" and r.problem is None for r in got)
    assert records.report.title_only == 2


def test_excel_cp1252_csv_is_decoded_and_the_fallback_reported(tmp_path: Path) -> None:
    raw = "id;Title;Abstract\n1;M\xe9n\xe9trier disease;Gastric folds.\n".encode("cp1252")
    records = read_records(_write(tmp_path, "excel.csv", raw))
    got = list(records)
    assert got[0].title == "Ménétrier disease"
    assert (records.report.encoding, records.report.encoding_fallback) == ("cp1252", True)


def test_a_utf16_export_with_its_byte_order_mark_is_read_as_utf16(tmp_path: Path) -> None:
    text = 'PMID,Title,Authors\n5555,"Prostate cancer, a review",Smith J\n6666,Ménétrier,Doe A\n'
    records = read_records(_write(tmp_path, "unicode.csv", text.encode("utf-16")))
    got = list(records)
    assert [(r.id, r.title) for r in got] == [("5555", "Prostate cancer, a review"),
                                              ("6666", "Ménétrier")]
    assert (records.report.encoding, records.report.encoding_fallback) == ("utf-16", False)


def test_one_line_in_another_encoding_leaves_the_utf8_lines_intact(tmp_path: Path) -> None:
    raw = ("PMID- 1\nTI  - Tumeurs malignes du côlon chez l’enfant.\n\n".encode()
           + "PMID- 2\nTI  - Ménétrier disease.\n".encode("cp1252"))
    records = read_records(_write(tmp_path, "mixed.nbib", raw))
    assert [r.title for r in records] == ["Tumeurs malignes du côlon chez l’enfant.",
                                          "Ménétrier disease."]
    assert (records.report.encoding, records.report.encoding_fallback) == ("utf-8+cp1252", True)


def test_a_row_with_more_fields_than_the_header_is_a_problem_not_shifted(tmp_path: Path) -> None:
    raw = b"title,abstract\nLeukemia,a,b,c,d\nOk,fine\n\nAlso ok,fine\n"
    records = read_records(_write(tmp_path, "ragged.csv", raw))
    got = list(records)
    assert [(r.id, r.title, r.abstract) for r in got] == [
        ("0", "", ""), ("1", "Ok", "fine"), ("2", "Also ok", "fine")]
    assert "line 2 has 5 fields but the header 2" in got[0].problem
    assert records.report.problems == 1


def test_a_quote_never_closed_is_a_problem_not_one_field_holding_the_rest(tmp_path: Path
                                                                         ) -> None:
    # Read leniently, the quote made "Unclosed..." and both rows after it one title.
    raw = 'Title\tAbstract\nFirst\tone\n"Unclosed title\ttwo\nThird\tthree\nFourth\tfour\n'
    records = read_records(_write(tmp_path, "unclosed.tsv", raw))
    got = list(records)
    assert [(r.title, r.problem) for r in got] == [("First", None), ("", (
        "line 3 opens a quoted field that is never closed, so the rest of the file would be "
        "one field; the rows from there on cannot be read"))]
    assert (records.report.records, records.report.problems) == (2, 1)


def test_rows_that_cannot_be_read_are_problems_and_the_rows_after_are_read(tmp_path: Path
                                                                          ) -> None:
    raw = ('id,Title,Abstract,label\n1,First,"an abstract\nwith a quoted line break",\n'
           '2,A title,an abstract\n3,"Quoted" then text,x,\n4,Ok,fine,cancer,extra\n'
           '5,Last,fine,\n')
    got = list(read_records(_write(tmp_path, "rows.csv", raw)))
    assert [(r.id, r.title, r.abstract) for r in got if not r.problem] == [
        ("1", "First", "an abstract with a quoted line break"), ("5", "Last", "fine")]
    assert [r.problem for r in got if r.problem] == [
        "line 4 has 3 of the header's 4 fields: a line break inside an unquoted field? (write "
        "every field, empty ones too)",
        "line 5: text after a closing quote (',' expected after '\"'); a field that begins "
        'with a quote must be quoted whole ("""Real-world"" evidence")',
        "line 6 has 5 fields but the header 4: an unquoted ',' in a field?"]


@pytest.mark.parametrize("raw", [
    "Title,Abstract\nT1,A1\nTitle part one\npart two,Abstract two\nT4,A4\n",
    "pmid,title,abstract\n1,T1,Abstract first.\nSecond sentence.\n3,T3,A3\n4,T4,A4\n"])
def test_both_rows_beside_an_unquoted_line_break_are_problems(tmp_path: Path, raw: str
                                                              ) -> None:
    # Read as they stand, the halves were papers: "part two" with the next paper's abstract,
    # or paper 1 with its abstract cut. Which side a fragment belongs to cannot be told, so
    # both are error rows (the innocent one too).
    got = list(read_records(_write(tmp_path, "broken.csv", raw)))
    assert [r.title for r in got if not r.problem] == ["T4"]
    assert "line 3 has 1 of the header's" in got[1].problem
    assert [r.problem for r in (got[0], got[2])] == [
        f"line {n} may be cut by a line break: line 3 beside it holds too few fields"
        for n in (2, 4)]


def test_a_long_cell_is_read_and_a_runaway_one_ends_the_table(tmp_path: Path) -> None:
    long = f"Title,Notes,Abstract\nFirst,{'x' * 140_000},one\nAfter,,two\n"
    assert [r.title for r in read_records(_write(tmp_path, "long.csv", long))] == [
        "First", "After"]
    # Read on after a field over the limit, the lines inside it became made-up papers.
    cell = '"' + "line, with a comma\n" * 900_000 + '"'
    raw = f"Title,Abstract\nFirst,one\nBig,{cell}\nAfter,two\n"
    got = list(read_records(_write(tmp_path, "big.csv", raw)))
    assert [(r.title, r.problem) for r in got] == [("First", None), ("", (
        "line 3 has a field over 16,777,216 characters (a quote that is not closed?), so the "
        "rest of the file would be one field; the rows from there on cannot be read"))]


def test_exporters_quirks_r_row_names_excel_sep_line_and_a_blank_first_line(tmp_path: Path
                                                                             ) -> None:
    r_table = 'Title\tAbstract\n"1"\t"T1"\t"A1"\n"2"\t"T2"\t"A2"\n'  # write.table(sep="\t")
    excel = "sep=;\n\nTitle;Abstract\nT1;A1, with a comma\nT2;A2\n"
    for name, raw in (("r.tsv", r_table), ("excel.csv", excel)):
        got = list(read_records(_write(tmp_path, name, raw)))
        assert [(r.title, r.problem) for r in got] == [("T1", None), ("T2", None)]
    # The sniffer took `,` from the abstract's list; the header says tab.
    tab = 'Title\tAbstract\tYear\nA\tAnswers ("yes", "no", "unsure").\t2020\n'
    assert [r.abstract for r in read_records(_write(tmp_path, "t.txt", tab))] == [
        'Answers ("yes", "no", "unsure").']


def test_a_tsv_whose_delimiter_the_sniffer_misses_is_read_by_its_header(tmp_path: Path
                                                                         ) -> None:
    # A pipe's copy has no .tsv suffix to fall back on.
    raw = "title\tabstract\nT1\tA1\nT2\tA2 with\ttab\nT3\tA3, with, commas\n"
    got = list(read_records(_write(tmp_path, "stdin", raw)))
    assert [(r.title, bool(r.problem)) for r in got] == [("T1", False), ("", True),
                                                         ("T3", False)]
    with pytest.raises(ValueError, match="the input is empty"):
        list(read_records(_write(tmp_path, "empty", " \n")))


def test_a_cut_pubmed_xml_keeps_the_records_before_the_cut(tmp_path: Path) -> None:
    cut = PUBMED_XML[: PUBMED_XML.index("<PubmedBookArticle>") + 40]
    records = read_records(_write(tmp_path, "pubmed26n0002.xml", cut))
    got = list(records)
    assert [r.id for r in got[:2]] == ["1000001", "1000002"]
    assert got[2].problem.startswith("the XML is not well formed at line")
    assert "the records from about there on cannot be read" in got[2].problem
    assert records.report.problems == 1
    with pytest.raises(ValueError, match="no record could be read"):
        list(read_records(_write(tmp_path, "junk.xml", PUBMED_XML[:300])))


def _articles(count: int) -> str:
    return "".join(f"<PubmedArticle><MedlineCitation><PMID>{i}</PMID><Article><ArticleTitle>"
                   f"Tumour study {i}</ArticleTitle></Article></MedlineCitation></PubmedArticle>"
                   for i in range(1, count + 1))


@pytest.mark.parametrize("after", ["\n<PubmedArticleSet>", "\ntrailing text"])
def test_content_after_the_root_keeps_every_record(tmp_path: Path, after: str) -> None:
    # Two efetch answers joined with cat, or text appended: lxml's iterparse gave up with no
    # record at 40 records and dropped the last chunk's records at 1,000.
    for count in (40, 1_000):
        xml = f"<?xml version='1.0'?><PubmedArticleSet>{_articles(count)}</PubmedArticleSet>"
        got = list(read_records(_write(tmp_path, "joined.xml", xml + after)))
        assert [r.pmid for r in got[:-1]] == [str(i) for i in range(1, count + 1)]
        assert "Extra content at the end of the document" in got[-1].problem
        assert "two XML files joined into one?" in got[-1].problem


def test_a_gz_missing_only_its_trailer_keeps_every_record(tmp_path: Path) -> None:
    # gzip's read() drops what it decompressed in the call that hits the cut: with 64 KiB
    # reads that refused a 150-record file whole.
    for count in (150, 2_000):
        full = f"<PubmedArticleSet>{_articles(count)}</PubmedArticleSet>".encode()
        got = list(read_records(_write(tmp_path, "cut.xml.gz", gzip.compress(full)[:-8])))
        assert [r.pmid for r in got[:-1]] == [str(i) for i in range(1, count + 1)]
        assert "cut short" in got[-1].problem


def test_joined_efetch_answers_and_a_cut_update_file_of_deletions(tmp_path: Path) -> None:
    answer = f"<?xml version='1.0'?>\n<PubmedArticleSet>{_articles(2)}</PubmedArticleSet>\n"
    got = list(read_records(_write(tmp_path, "joined.xml", answer * 2)))
    assert [r.pmid for r in got[:-1]] == ["1", "2"]
    assert "two XML files joined into one?" in got[-1].problem
    deletions = "<PubmedArticleSet><DeleteCitation><PMID>1</PMID><PMID>2</PMID></DeleteCitation>"
    records = read_records(_write(tmp_path, "pubmed26n1500.xml", deletions + "<Pubmed"))
    [problem] = list(records)  # the deletions were read: not "no record could be read"
    assert "not well formed" in problem.problem
    assert records.report.skipped["deleted citation"] == 2
    with pytest.raises(ValueError, match="- is standard input, a pipe or a device"):
        read_records(Path("-"))


def test_a_syntax_error_keeps_the_records_completed_before_it(tmp_path: Path) -> None:
    xml = (f"<PubmedArticleSet>{_articles(500)}<PubmedArticle><MedlineCitation><PMID>501"
           f"</PMID><Article><ArticleTitle>x</Wrong>{_articles(3)}</PubmedArticleSet>")
    got = list(read_records(_write(tmp_path, "broken.xml", xml)))
    assert [r.pmid for r in got[:-1]] == [str(i) for i in range(1, 501)]
    assert "Opening and ending tag mismatch" in got[-1].problem


def test_medline_records_without_a_blank_line_between_them_stay_apart(tmp_path: Path) -> None:
    records = read_records(_write(tmp_path, "pasted.nbib", NBIB.replace("\n\nPMID", "\nPMID")))
    assert [(r.pmid, r.title) for r in records] == [
        ("3000001", "A title that wraps over two lines"),
        ("3000002", "Letter without an abstract")]


def test_a_cut_gzip_keeps_what_was_read_before_the_cut(tmp_path: Path) -> None:
    article = PUBMED_XML.split("<PubmedArticleSet>")[1].split("<PubmedBookArticle>")[0]
    many = "".join(article.replace("100000", f"{i:06d}") for i in range(200))
    full = gzip.compress(f"<PubmedArticleSet>{many}</PubmedArticleSet>".encode())
    got = list(read_records(_write(tmp_path, "cut.xml.gz", full[: len(full) // 2])))
    assert len(got) > 10 and all(r.problem is None for r in got[:-1])
    assert "cut short" in got[-1].problem
    with pytest.raises(ValueError, match="cut short"):
        list(read_records(_write(tmp_path, "cut.nbib.gz", gzip.compress(NBIB.encode())[:40])))


def _gzip_cut_at(text: str, at: int) -> bytes:
    """The first `at` characters of `text` gzipped and flushed, and no more: what a download
    of the gzipped text that broke there leaves."""
    packer = zlib.compressobj(wbits=31)
    return packer.compress(text[:at].encode()) + packer.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize(("name", "record"), [
    ("cut.nbib", "PMID- {i}\nTI  - Title {i}\nAB  - Abstract {i} about a tumour.\n"
                 "      More of abstract {i}.\n\n"),
    ("cut.ris", "TY  - JOUR\nTI  - Title {i}\nAB  - Abstract {i} about a tumour.\n"
                "AN  - {i}\nER  - \n\n"),
    ("cut.csv", '{i},Title {i},"Abstract {i}, about\na tumour."\n'),
    ("cut.jsonl", '{{"pmid": "{i}", "title": "Title {i}", "abstract": "Abstract {i}."}}\n'),
    ("cut.bib", "@article{{k{i},\n  title = {{Title {i}}},\n  abstract = {{Abstract {i}.}},\n"
                "  pmid = {{{i}}},\n}}\n"),
])
def test_a_cut_text_gzip_keeps_its_complete_records(tmp_path: Path, name: str,
                                                     record: str) -> None:
    # Such files used to be refused whole. Wherever in record 2,000 the cut falls, the
    # records before it are read as in the whole file (but for the one just before, where
    # its end cannot be told: a table's last whole line, a MEDLINE record whose next tag line
    # is cut), that one is not read at all (a CSV cell cut between its lines is reported as
    # an open quote), and a last row says why.
    header = "pmid,title,abstract\n" if name == "cut.csv" else ""
    text = header + "".join(record.format(i=i) for i in range(1, 3_001))
    whole = list(read_records(_write(tmp_path, name + ".gz", gzip.compress(text.encode()))))
    assert len(whole) == 3_000 and not any(r.problem for r in whole)
    start = len(header + "".join(record.format(i=i) for i in range(1, 2_000)))
    for into in range(1, len(record.format(i=2_000)), 7):
        packed = _gzip_cut_at(text, start + into)
        cut = list(read_records(_write(tmp_path, name + ".gz", packed)))
        kept = [r for r in cut if not r.problem]
        assert len(kept) in (1_998, 1_999) and kept == whole[: len(kept)]
        assert cut[: len(kept)] == kept and len(cut) - len(kept) in (1, 2)
        assert all("quoted field that is never closed" in r.problem for r in cut[len(kept):-1])
        assert cut[-1].id == name + ".gz" and "cut short" in cut[-1].problem
        assert "cannot be read" in cut[-1].problem and not cut[-1].title


def _damaged_gz(text: str, at: str) -> bytes:
    """`text` gzipped uncompressed (stored), one byte changed inside `at`: the CRC fails."""
    blob = bytearray(gzip.compress(text.encode(), compresslevel=0))
    blob[bytes(blob).index(at.encode()) + 1] ^= 0x01
    return bytes(blob)


def test_a_damaged_gzip_is_refused_whole_not_read_garbled(tmp_path: Path) -> None:
    # Kept like a cut file, its records were read with the changed byte in them.
    nbib = "".join(f"PMID- {i}\nTI  - Title {i}\nAB  - The tumour grew in {i} of 40.\n\n"
                   for i in range(1, 200))
    with pytest.raises(ValueError, match="damaged: its text cannot be trusted.*CRC check"):
        list(read_records(_write(tmp_path, "bad.nbib.gz", _damaged_gz(nbib, "grew in 50 "))))
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "bad.nbib.gz").write_bytes(_damaged_gz(nbib, "\n\nPMID- 150"))
    (folder / "good.nbib").write_text("PMID- 9999\nTI  - Good\nAB  - Fine.\n")
    got = list(read_records(folder))
    assert [r.id for r in got] == ["bad.nbib.gz", "9999"] and "CRC check" in got[0].problem
    xml = f"<PubmedArticleSet>{_articles(300)}</PubmedArticleSet>"
    got = list(read_records(_write(tmp_path, "bad.xml.gz", _damaged_gz(xml, "study 150<"))))
    assert "the records before it may hold wrong text too" in got[-1].problem


def test_a_small_cut_gzip_keeps_its_records(tmp_path: Path) -> None:
    # Under 8 KiB before the cut, format detection met the cut first and refused the file.
    text = "".join(f"PMID- {i}\nTI  - Title {i}\n\n" for i in range(1, 400))
    got = list(read_records(_write(tmp_path, "small.nbib.gz",
                                   _gzip_cut_at(text, text.index("PMID- 60\n") + 7))))
    assert [r.pmid for r in got[:-1]] == [str(i) for i in range(1, 60)]
    assert "cut short" in got[-1].problem


@pytest.mark.parametrize("name", ["old-mac.nbib.gz", "old-mac.ris.gz", "old-mac.csv.gz"])
def test_a_cut_gzip_with_cr_line_ends_keeps_its_records(tmp_path: Path, name: str) -> None:
    record = {"old-mac.nbib.gz": "PMID- {i}\rTI  - Title {i}\r\r",
              "old-mac.ris.gz": "TY  - JOUR\rTI  - Title {i}\rAN  - {i}\rER  - \r",
              "old-mac.csv.gz": "{i},Title {i}\r"}[name]
    header = "pmid,title\r" if "csv" in name else ""
    text = header + "".join(record.format(i=i) for i in range(1, 400))
    cut = text.index(record.format(i=300)) + 9
    got = list(read_records(_write(tmp_path, name, _gzip_cut_at(text, cut))))
    assert [r.title for r in got[:-1]][:298] == [f"Title {i}" for i in range(1, 299)]
    assert len(got) - 1 in (298, 299) and "cut short" in got[-1].problem


def test_a_paragraph_break_of_spaces_inside_a_medline_abstract(tmp_path: Path) -> None:
    # NCBI Bookshelf records (StatPearls) hold lines of spaces between paragraphs: made blank
    # they ended the record there (Bio.Medline raised KeyError on the rest), and a cut after
    # one read the first paragraph as the whole abstract.
    paragraphs = ("PMID- 29939664\nTI  - Morvan Syndrome.\nAB  - Morvan syndrome is rare.\n"
                  "      \n      It is fatal with a thymoma.\n\n")
    text = "".join(f"PMID- {i}\nTI  - Title {i}\n\n" for i in range(1, 300)) + paragraphs
    whole = list(read_records(_write(tmp_path, "bookshelf.nbib", text + "PMID- 1\nTI  - T\n")))
    assert whole[299].abstract == "Morvan syndrome is rare. It is fatal with a thymoma."
    cut = list(read_records(_write(tmp_path, "bookshelf.nbib.gz",
                                   _gzip_cut_at(text, text.index("It is") + 3))))
    assert [r.pmid for r in cut[:-1]] == [str(i) for i in range(1, 300)]
    with pytest.raises(ValueError, match="MEDLINE record 1 starts with an indented line"):
        list(read_records(_write(tmp_path, "indented.nbib", "      text\nPMID- 1\n"), "medline"))


def test_an_unquoted_line_break_at_the_cut_is_not_read_as_a_row(tmp_path: Path) -> None:
    rows = [f"{i},Title {i},Abstract {i}.\n" for i in range(1, 400)]
    rows[299] = "300,Title 300,Abstract 300: the tumour shrank\nin no patient.\n"
    text = "pmid,title,abstract\n" + "".join(rows)
    for at in (text.index("in no patient") + 5, text.index("in no patient")):
        got = list(read_records(_write(tmp_path, "broken.csv.gz", _gzip_cut_at(text, at))))
        assert [r.pmid for r in got if not r.problem] == [str(i) for i in range(1, 300)]


def test_a_cut_utf16_text_gzip_is_refused_whole(tmp_path: Path) -> None:
    text = "".join(f"PMID- {i}\nTI  - Title {i}\n\n" for i in range(1, 2_000))
    packed = gzip.compress(text.encode("utf-16"))
    with pytest.raises(ValueError, match="cut short.*no record could be read"):
        list(read_records(_write(tmp_path, "cut.nbib.gz", packed[: len(packed) // 2])))


def test_pubmed_xml_edge_records(tmp_path: Path) -> None:
    cited = PUBMED_XML.replace(
        '<ArticleId IdType="doi">10.9999/example.1</ArticleId>\n   </ArticleIdList>',
        '</ArticleIdList>\n   <ReferenceList><Reference><ArticleIdList><ArticleId '
        'IdType="doi">10.9999/someone-else</ArticleId></ArticleIdList></Reference>'
        '</ReferenceList>')
    got = list(read_records(_write(tmp_path, "cited.xml", cited)))
    assert got[0].doi == "10.9999/elocation.1"  # its own, not a cited work's
    bare = ("<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>7</PMID>"
            "</MedlineCitation></PubmedArticle></PubmedArticleSet>")
    [record] = read_records(_write(tmp_path, "bare.xml", bare))
    assert record.id == "7" and "lacks the PMID, Article or BookDocument" in record.problem


def test_medline_edge_records(tmp_path: Path) -> None:
    text = ("PMID- 1\nTI  - T1\nAB  - A1\n   \nPMID- 2\nTI  - T2\nAB  - PMID-based linkage\n"
            "PMID-based linkage was used.\n\nPMID- 5\nBTI - A book\nAB  - x\n")
    got = list(read_records(_write(tmp_path, "edge.nbib", text)))
    assert [(r.pmid, r.title) for r in got] == [("1", "T1"), ("2", "T2"), ("5", "A book")]


def test_ris_edge_files(tmp_path: Path) -> None:
    cut = "TY  - JOUR\nTI  - A\nAB  - a\nER  - \n\nTY  - JOUR\nTI  - B\nAB  - b\n"
    assert [r.title for r in read_records(_write(tmp_path, "cut.ris", cut))] == ["A", "B"]
    old_mac = cut.replace("\n", "\r")
    assert [r.title for r in read_records(_write(tmp_path, "mac.ris", old_mac))] == ["A", "B"]
    journal = "\ufeffTY  - JOUR\nT1  - Single\nN2  - One record.\nDO  - 10.1/x\nER  - \n"
    [record] = read_records(_write(tmp_path, "journal.ris", journal))  # BOM before TY
    assert (record.title, record.doi) == ("Single", "10.1/x")
    [wide] = read_records(_write(tmp_path, "wide.ris", journal[1:].encode("utf-16")))
    assert wide.title == "Single"


def test_jsonl_line_separators_inside_strings_and_zotero_csv(tmp_path: Path) -> None:
    text = json.dumps({"title": "A\u2028B", "abstract": "C\u0085D"}, ensure_ascii=False)
    [record] = read_records(_write(tmp_path, "sep.jsonl", text + "\n"))
    assert record.problem is None and record.title.startswith("A")
    zotero = 'Key,Title,Abstract Note\nK1,A title,An abstract.\n'
    [paper] = read_records(_write(tmp_path, "zotero.csv", zotero))
    assert paper.abstract == "An abstract."


def test_one_bad_file_in_a_folder_does_not_stop_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a.nbib").write_text(NBIB)
    (folder / "b.nbib").symlink_to(folder / "a.nbib")  # the same file again: read once
    (folder / "README.md").write_text('<p align="center">Exports</p>\n')
    (folder / "labels.csv").write_text("id,label\n1,cancer\n")
    records = read_records(folder)
    got = list(records)
    assert [r.pmid for r in got if r.problem is None] == ["3000001", "3000002"]
    assert [r.problem.split(":")[0] for r in got if r.problem] == ["labels.csv"]
    assert records.report.skipped == {"file that is not a paper export": 1}  # the HTML
    with pytest.raises(ValueError, match="is a folder"):
        read_records(folder, fmt="csv")


def test_control_characters_are_removed_and_counted(tmp_path: Path) -> None:
    raw = b'id,title,abstract\n1,"Ti\x00tle\x07",Abs\x00tract\n'
    records = read_records(_write(tmp_path, "nul.csv", raw))
    got = list(records)
    assert (got[0].title, got[0].abstract) == ("Title", "Abstract")
    assert records.report.control_chars_removed == 3


def test_jsonl_with_lone_surrogate_and_bad_lines_keeps_every_line(tmp_path: Path) -> None:
    lines = [json.dumps({"id": "a", "title": "Fine", "abstract": "Text."}),
             '{"id": "b", "title": "Bad \\udc80 title", "abstract": "Text."}',
             "{not json", "[1, 2]", json.dumps({"id": "e", "title": "", "abstract": ""})]
    records = read_records(_write(tmp_path, "in.jsonl", "\n".join(lines)))
    got = list(records)
    assert [r.id for r in got] == ["a", "b", "2", "3", "e"]
    assert got[0].problem is None
    assert "lone surrogate (U+DC80" in got[1].problem
    assert "line 3 is not valid JSON" in got[2].problem
    assert "line 4 is not a JSON object" in got[3].problem
    assert "neither a title nor an abstract" in got[4].problem
    assert records.report.problems == 4


def test_columns_in_any_case_or_mapped_explicitly(tmp_path: Path) -> None:
    tsv = _write(tmp_path, "t.tsv", "PMID\tARTICLE TITLE\tAbstract\n7\tA title\tAn abstract\n")
    got = list(read_records(tsv))
    assert (got[0].id, got[0].title, got[0].abstract) == ("7", "A title", "An abstract")
    odd = _write(tmp_path, "odd.csv", "Ref,Headline,Summary\nr1,H,S\n")
    with pytest.raises(ValueError, match="no title or abstract column"):
        list(read_records(odd))
    got = list(read_records(odd, columns={"id": "Ref", "title": "Headline",
                                          "abstract": "Summary"}))
    assert (got[0].id, got[0].title, got[0].abstract) == ("r1", "H", "S")


def test_parquet_and_folder(tmp_path: Path) -> None:
    parquet = tmp_path / "p.parquet"
    pd.DataFrame({"Title": ["T"], "Abstract": ["A"], "Label": ["cancer"]}).to_parquet(parquet)
    got = list(read_records(parquet))
    assert (got[0].id, got[0].title, got[0].label) == ("0", "T", "cancer")
    folder = tmp_path / "papers" / "Cancer"
    folder.mkdir(parents=True)
    (folder / "1.txt").write_text("<ID:11>\nTitle: A tumour\nAbstract: Text.\n")
    (folder / "2.txt").write_text("not a paper")
    records = read_records(tmp_path / "papers")
    got = list(records)
    assert records.format == "folder"
    assert (got[0].id, got[0].label, got[0].problem) == ("11", "cancer", None)
    assert got[1].problem.startswith("2.txt: first line is not <ID:")


def test_a_folder_of_exports_reads_each_file_by_its_format(tmp_path: Path) -> None:
    baseline = tmp_path / "pubmed-baseline"
    (baseline / ".cache").mkdir(parents=True)
    (baseline / "pubmed26n0001.xml.gz").write_bytes(gzip.compress(PUBMED_XML.encode()))
    (baseline / "export.nbib").write_text(NBIB)
    (baseline / "README.md").write_text("# Baseline files, 2026\n")
    (baseline / ".cache" / "x.nbib").write_text(NBIB)  # hidden: not read
    records = read_records(baseline)
    got = list(records)
    assert records.format == "folder"
    assert [r.pmid for r in got] == ["3000001", "3000002", "1000001", "1000002", "1000003"]
    assert dict(records.report.skipped) == {"file that is not a paper export": 1,
                                            "deleted citation": 2}
    assert records.report.records == 5


def test_format_comes_from_the_content_not_the_name(tmp_path: Path) -> None:
    assert detect_format(_write(tmp_path, "a.txt", PUBMED_XML)) == "pubmed-xml"
    assert detect_format(_write(tmp_path, "b.txt", NBIB)) == "medline"
    assert detect_format(_write(tmp_path, "c.txt", RIS)) == "ris"
    assert detect_format(_write(tmp_path, "d.txt", '{"title": "x"}\n')) == "jsonl"
    assert detect_format(_write(tmp_path, "e.dat", gzip.compress(NBIB.encode()))) == "medline"


def _big_baseline(path: Path, records: int) -> None:
    abstract = "Cells were counted in a long abstract. " * 60  # ~2.3 kB per record
    head, tail = PUBMED_XML.split("<PubmedArticleSet>")[0], "</PubmedArticleSet>\n"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(head + "<PubmedArticleSet>\n")
        for n in range(records):
            f.write(f"<PubmedArticle><MedlineCitation><PMID>{n}</PMID><Article><ArticleTitle>"
                    f"Title {n}</ArticleTitle><Abstract><AbstractText>{abstract}</AbstractText>"
                    "</Abstract></Article></MedlineCitation></PubmedArticle>\n")
        f.write(tail)


@pytest.mark.slow
def test_a_baseline_sized_gz_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    # 30,000 records (a PubMed baseline file), ~70 MB of XML: parsed whole, lxml would hold
    # several times that; streamed, the reader's peak stays far below the file's size.
    path = tmp_path / "pubmed26n0999.xml.gz"
    _big_baseline(path, 30_000)
    script = (
        "import resource, sys\nfrom pathlib import Path\n"
        "from preprocessing.readers import read_records\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "n = sum(1 for _ in read_records(Path(sys.argv[1])))\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(n, (after - before) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                         text=True, check=True, timeout=600).stdout.split()
    count, grown_mib = int(out[0]), int(out[1])
    assert count == 30_000
    assert grown_mib < 40, f"peak memory grew {grown_mib} MiB while reading"


def test_gzipped_tables_are_read_and_expansion_is_bounded(tmp_path: Path) -> None:
    from preprocessing.readers import InputTooLarge

    tsv = _write(tmp_path, "t.tsv.gz", gzip.compress(b"PMID\tTitle\n9\tA title\n"))
    got = list(read_records(tsv))
    assert [(r.pmid, r.title) for r in got] == [("9", "A title")]
    # 30 kB of gzip that expands to 30 MB: refused past the bound, whatever the format.
    bomb = _write(tmp_path, "bomb.csv.gz", gzip.compress(b"title\n" + b"a" * 30_000_000))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(InputTooLarge, match="more than 1000000 bytes"):
        list(read_records(bomb, max_bytes=1_000_000))
    xml = _write(tmp_path, "bomb.xml.gz", gzip.compress(PUBMED_XML.encode() * 2))
    with pytest.raises(InputTooLarge):
        list(read_records(xml, max_bytes=1_000))


def test_a_pipe_is_copied_once_and_read_as_a_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # Read directly, a pipe hung (the format was recognised on one open, the records waited
    # on a second); the reader refuses it at once and as_file copies it.
    with pytest.raises(ValueError, match="is standard input, a pipe or a device, not a file"):
        read_records(fifo)
    writer = threading.Thread(target=fifo.write_text, args=(NBIB,))
    writer.start()
    with as_file(fifo, tmp_path) as copy:
        assert copy != fifo and copy.read_text() == NBIB
        assert [r.pmid for r in read_records(copy)] == ["3000001", "3000002"]
    writer.join()
    assert not copy.exists() and [p.name for p in tmp_path.iterdir()] == ["pipe"]
    with as_file(tmp_path) as same:
        assert same == tmp_path


def test_columns_named_alike_the_first_wins(tmp_path: Path) -> None:
    raw = "TITLE,Abstract,Title\nFirst,A,Second\n"
    assert [r.title for r in read_records(_write(tmp_path, "alike.csv", raw))] == ["First"]


def test_a_copy_that_would_fill_the_disk_stops_with_a_clear_error(tmp_path: Path) -> None:
    zero = Path("/dev/zero")  # endless: copied as it is, it filled the disk
    with pytest.raises(InputTooLarge, match="left under .* bytes free after 0 bytes"), \
            as_file(zero, tmp_path, keep_free=1 << 62):
        pass
    assert list(tmp_path.iterdir()) == []

BIBTEX = r"""% Encoding: UTF-8
@comment{jabref-meta: databaseType:bibtex;}
@string{jn = "J Example"}
@article{smith2020,
  title = {{T}umour suppressor {p53} in {\"o}sophageal cancer \& more},
  author = {Smith, J. and M{\"u}ller, K.},
  journal = jn,
  abstract = {BACKGROUND: 5\% of patients -- all adults.},
  doi = {10.9999/bib.1},
  pmid = {6000001},
}
@Article{zotero2021,
  Title = "A {Z}otero title",
  Abstract = {Plain abstract.},
  note = {PMID: 6000002},
}
@online{biblatex2022, title = {A biblatex entry}, eprint = {6000003}, eprinttype = {pubmed}}
@article{broken, title = {An unclosed brace
@article{smith2020, title = {A second entry under a key already used}}
@book{notitle, author = {Nobody}}
"""


def test_a_broken_bibtex_block_is_a_row_not_a_line_on_stderr(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.bib", "@article{a, title = {Open\n@article{b, title={B}}\n")
    code = ("import sys; from pathlib import Path; from preprocessing.readers import "
            "read_records; print([r.id for r in read_records(Path(sys.argv[1]))])")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "['bibtex-line-1', 'b']" and done.stderr == ""


def test_bibtex_exports_of_reference_managers(tmp_path: Path) -> None:
    path = _write(tmp_path, "library.bib", BIBTEX)
    assert detect_format(path) == "bibtex"
    records = read_records(path)
    got = list(records)
    assert [(r.id, r.title, r.abstract, r.pmid, r.doi) for r in got if not r.problem] == [
        ("smith2020", "Tumour suppressor p53 in ösophageal cancer & more",
         "BACKGROUND: 5% of patients – all adults.", "6000001", "10.9999/bib.1"),
        ("zotero2021", "A Zotero title", "Plain abstract.", "6000002", None),
        ("biblatex2022", "A biblatex entry", "", "6000003", None),
        ("smith2020", "A second entry under a key already used", "", None, None)]
    problems = [(r.id, r.problem) for r in got if r.problem]
    assert problems[0][0] == "bibtex-line-18"
    assert problems[0][1] == ("the BibTeX block at line 18 cannot be read: Unexpected block "
                              "start: `@article`. Was still looking for field-value closing `}`")
    assert problems[1] == ("notitle", "the record has neither a title nor an abstract")
    assert records.report.format == "bibtex"


def test_bibtex_text_is_decoded_faithfully_or_refused(tmp_path: Path) -> None:
    # Found by an adversarial review: Zotero's {\textless}, EndNote's raw % and & lost text;
    # a brace too many, a missing comma or # concatenation gave wrong fields without a word.
    bib = r"""
@article{lt, title = {p {\textless} 0.05 and n {\textgreater} 100},
  abstract = {Reduced by 50% in mice; IL-6 & TNF; ~50 patients; 5\% -- all},
  title = {A second title is ignored}, doi = {10.1000/abc%2Fdef},
  note = {Comment on: J Ex. 2019;1:1. PMID: 29999999}}
@article{brace, title = {A title}, abstract = {We found } that levels rose.}, pmid = {111}}
@article{comma, title = {T1}
  abstract = {abs}}
@string{pre = "Title part one"}
@article{concat, title = pre # " and two"}
@article{macro, title = pre, eprint = { 12345681 }, eprinttype = {pmid}}
@article{extra, title = {Extra}, extra = {Type: article
PMID: 31234567}, pmid = {٣١٢}}
"""
    got = {r.id: r for r in read_records(_write(tmp_path, "z.bib", bib))}
    lt = got["lt"]
    assert (lt.title, lt.abstract, lt.doi, lt.pmid) == (
        "p < 0.05 and n > 100", "Reduced by 50% in mice; IL-6 & TNF; ~50 patients; 5% – all",
        "10.1000/abc%2Fdef", None)
    assert "ends before fields that follow it" in got["brace"].problem
    for key in ("comma", "concat"):
        assert "cannot be read for sure" in got[key].problem
    assert (got["macro"].title, got["macro"].pmid) == ("Title part one", "12345681")
    assert (got["extra"].pmid, got["extra"].problem) == ("31234567", None)


def test_an_at_sign_line_inside_other_formats_is_not_bibtex(tmp_path: Path) -> None:
    csv_cell = 'Title,Abstract\nA,"first line\n@article{z, q}"\nB,two\n'
    assert detect_format(_write(tmp_path, "a.csv", csv_cell)) == "csv"
    bib = "% Encoding: UTF-8\n\n@article{k, title = {T}, annote = {x\nPMID- 1\nTY  - JOUR}}\n"
    path = _write(tmp_path, "k.bib", bib)
    assert detect_format(path) == "bibtex"
    assert [r.title for r in read_records(path)] == ["T"]
