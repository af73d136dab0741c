"""The one check every invoice and credit note document of the test suite goes through:
the OASIS UBL 2.1 XSD (``tests/data/ubl-2.1``) and CEN/TC 434's EN 16931 Schematron compiled
to XSLT (``tests/data/en16931``), run by SaxonC-HE. A document passes with zero fatal
assertions; warnings are collected, not failed on.

The XSLT is compiled once per test process (``functools.cache``). ``STATS`` counts what was
validated in this process (the suite prints nothing; a test asserts on it where useful).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

DATA = Path(__file__).resolve().parent / "data"
XSLT = DATA / "en16931" / "EN16931-UBL-validation.xslt"
XSD = DATA / "ubl-2.1" / "maindoc"
SVRL = "http://purl.oclc.org/dsdl/svrl"
ROOTS = {
    "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice": "Invoice",
    "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote": "CreditNote",
}


@dataclass(frozen=True)
class Assertion:
    id: str
    flag: str
    location: str
    text: str


@dataclass
class Stats:
    documents: int = 0
    invoices: int = 0
    credit_notes: int = 0


STATS = Stats()


@cache
def _schema(kind: str) -> Any:
    return etree.XMLSchema(etree.parse(str(XSD / f"UBL-{kind}-2.1.xsd")))


@cache
def _executable() -> Any:
    from saxonche import PySaxonProcessor

    processor = PySaxonProcessor(license=False)
    compiler = processor.new_xslt30_processor()
    return processor, compiler.compile_stylesheet(stylesheet_file=str(XSLT))


def schematron(xml: bytes) -> list[Assertion]:
    """Every failed assertion of the EN 16931 rules on ``xml`` (fatal and warnings)."""
    processor, executable = _executable()
    node = processor.parse_xml(xml_text=xml.decode("utf-8"))
    svrl = executable.transform_to_string(xdm_node=node)
    report = etree.fromstring(svrl.encode("utf-8"))
    return [
        Assertion(
            id=failed.get("id") or "",
            flag=failed.get("flag") or "fatal",
            location=failed.get("location") or "",
            text=" ".join("".join(failed.itertext()).split()),
        )
        for failed in report.iter(f"{{{SVRL}}}failed-assert")
    ]


def fatal(xml: bytes) -> list[Assertion]:
    return [a for a in schematron(xml) if a.flag != "warning"]


def assert_valid_ubl(xml: bytes) -> Any:
    """``xml`` is a UBL 2.1 Invoice or CreditNote valid against the XSD with no fatal EN 16931
    assertion. Returns the parsed tree and the warnings (``tree, warnings``)."""
    tree = etree.fromstring(xml)
    kind = ROOTS.get(tree.tag)
    assert kind is not None, f"not a UBL invoice or credit note: {tree.tag}"
    xsd = _schema(kind)
    assert xsd.validate(tree), xsd.error_log
    failed = schematron(xml)
    errors = [a for a in failed if a.flag != "warning"]
    assert not errors, "\n".join(f"{a.id} at {a.location}: {a.text}" for a in errors)
    STATS.documents += 1
    if kind == "Invoice":
        STATS.invoices += 1
    else:
        STATS.credit_notes += 1
    return tree, [a for a in failed if a.flag == "warning"]
