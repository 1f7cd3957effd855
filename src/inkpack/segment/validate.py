"""Validate PAGE-XML (2019-07-15) and ALTO 4 documents against the bundled XSD schemas
(``inkpack/segment/schemas``, provenance in its README) with ``lxml.etree.XMLSchema``,
offline: ALTO's import of the LoC xlink schema resolves to the bundled copy."""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

SCHEMAS = Path(__file__).with_name("schemas")
PAGE_XSD = SCHEMAS / "pagecontent-2019-07-15.xsd"
ALTO_XSD = SCHEMAS / "alto-4-2.xsd"
XLINK_XSD = SCHEMAS / "xlink.xsd"
_LOCAL = {"http://www.loc.gov/standards/xlink/xlink.xsd": XLINK_XSD}


class _Bundled(etree.Resolver):
    def resolve(self, url, pubid, context):
        local = _LOCAL.get(url)
        return self.resolve_filename(str(local), context) if local is not None else None


@functools.lru_cache(maxsize=None)
def schema(kind: str) -> etree.XMLSchema:
    """The ``page`` or ``alto`` schema (parsed once)."""
    path = {"page": PAGE_XSD, "alto": ALTO_XSD}[kind]
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_Bundled())
    return etree.XMLSchema(etree.parse(str(path), parser))


def schema_errors(data: bytes, kind: str) -> list[str]:
    """Validation errors of a PAGE-XML (``kind="page"``) or ALTO (``"alto"``) document; [] when valid."""
    doc = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    s = schema(kind)
    if s.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in s.error_log]
