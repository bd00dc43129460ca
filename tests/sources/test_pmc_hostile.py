"""Every bad input named in the PMC issue gives a named error (never a crash, never data)."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from pathlib import Path

import pytest
from lxml import etree

from curate.errors import (
    EmptyInput,
    HostileXML,
    InputError,
    MalformedXML,
    NotJATS,
    NotUTF8,
    PackageWithoutXML,
    TruncatedArchive,
)
from curate.parse import jats
from curate.parse.images import probe_image
from curate.parse.jats import _check_prolog, parse_jats, parse_jats_articles, parse_xml
from curate.sources.pmc import PMCSource, read_package
from curate.stages import Failed, Rejected

GOOD = (
    b'<?xml version="1.0" encoding="UTF-8"?><article xmlns:xlink="http://www.w3.org/1999/xlink">'
    b'<front><article-meta><article-id pub-id-type="pmc">42</article-id></article-meta></front>'
    b'<body><fig id="f1"><caption><p>Chest X-ray.</p></caption><graphic xlink:href="f1"/></fig>'
    b"</body></article>"
)


def test_malformed_xml() -> None:
    with pytest.raises(MalformedXML) as err:
        parse_jats(b"<article><body><p>unclosed</body></article>")
    assert err.value.reason == "malformed_xml"


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        "<article><body><p>&xxe;</p></body></article>"
    ).encode()
    with pytest.raises(HostileXML) as err:
        parse_jats(data)
    assert err.value.reason == "hostile_xml"


def test_parameter_entity_and_network_dtd_are_refused() -> None:
    data = (
        b'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY % remote SYSTEM '
        b'"http://127.0.0.1:9/evil.dtd"> %remote;]><article/>'
    )
    with pytest.raises(HostileXML):
        parse_jats(data)


def laughs(levels: int) -> bytes:
    """A billion-laughs document: each entity is ten of the one before (10**(levels-1) "lol")."""
    entities = b"".join(
        b'<!ENTITY l%d "%s">' % (i, (b"&l%d;" % (i - 1)) * 10 if i else b"lol")
        for i in range(levels)
    )
    root = b"<article><p>&l%d;</p></article>" % (levels - 1)
    return b'<?xml version="1.0"?><!DOCTYPE article [' + entities + b"]>" + root


def test_entity_expansion_bomb_is_refused() -> None:
    with pytest.raises(HostileXML):
        parse_jats(laughs(10))


def test_utf16_doctype_with_entities_is_refused() -> None:
    text = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><article>&x;</article>'
    with pytest.raises(HostileXML):
        parse_jats(text.encode("utf-16"))


def test_standard_jats_doctype_is_accepted() -> None:
    data = GOOD.replace(
        b"<article ",
        b'<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange '
        b'DTD v1.2 20190208//EN" "JATS-archivearticle1.dtd">\n<article ',
    )
    assert parse_jats(data).pmcid == "PMC42"


# ---- each XML guard alone -------------------------------------------------------------------
# parse_xml has two defences: a byte scan of the prolog before lxml (_check_prolog), and after
# it the parser settings plus a check that the parsed DTD declares no entities (a libxml2
# amplification error is named too). The tests above pass while either one works; these pin
# each one alone, so breaking one fails here even though the other still holds.

XML_DECL = b'<?xml version="1.0"?>'
ENTITY_DOCUMENTS = {
    "internal_entity": XML_DECL
    + b'<!DOCTYPE article [<!ENTITY x "y">]><article><p>&x;</p></article>',
    "external_entity": XML_DECL
    + b'<!DOCTYPE article [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
    + b"<article><p>&xxe;</p></article>",
    "parameter_entity": XML_DECL
    + b'<!DOCTYPE article [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>'
    + b"<article/>",
    # Small enough that libxml2's own amplification limit does not stop it: only the guards do.
    "small_laughs": laughs(4),
    "utf16_internal_entity": '<?xml version="1.0" encoding="UTF-16"?>'
    '<!DOCTYPE article [<!ENTITY x "y">]><article>&x;</article>'.encode("utf-16"),
}
PROLOG_REFUSAL = r"^DOCTYPE declares entities \(external entity or entity expansion\)$"
DTD_REFUSAL = r"^DOCTYPE declares entities$"


@pytest.mark.parametrize("name", [*ENTITY_DOCUMENTS, "laughs", "utf16_big_endian"])
def test_prolog_scan_alone_refuses_entity_declarations(name: str) -> None:
    if name == "laughs":
        data = laughs(10)
    elif name == "utf16_big_endian":
        text = '<!DOCTYPE article [<!ENTITY x "y">]><article>&x;</article>'
        data = b"\xfe\xff" + text.encode("utf-16-be")
    else:
        data = ENTITY_DOCUMENTS[name]
    with pytest.raises(HostileXML, match=PROLOG_REFUSAL):
        _check_prolog(data)


@pytest.mark.parametrize(
    "data",
    [
        GOOD,
        GOOD.replace(
            b"<article ", b'<!DOCTYPE article SYSTEM "JATS-archivearticle1.dtd"><article '
        ),
        # "<!ENTITY" after the root start tag is text, not a declaration.
        b'<!DOCTYPE article><article><p><![CDATA[<!ENTITY x "y">]]></p></article>',
    ],
    ids=["no_doctype", "system_doctype", "entity_text_in_body"],
)
def test_prolog_scan_alone_passes_prologs_without_declarations(data: bytes) -> None:
    assert _check_prolog(data) is None


def test_hostile_prolog_never_reaches_lxml(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parser() -> None:
        pytest.fail("a prolog declaring entities was handed to lxml")

    monkeypatch.setattr(jats, "_parser", no_parser)
    with pytest.raises(HostileXML, match=PROLOG_REFUSAL):
        parse_xml(ENTITY_DOCUMENTS["internal_entity"])


@pytest.fixture
def without_prolog_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jats, "_check_prolog", lambda data: None)


@pytest.mark.parametrize("name", list(ENTITY_DOCUMENTS))
def test_dtd_check_alone_refuses_entity_declarations(without_prolog_scan, name: str) -> None:
    with pytest.raises(HostileXML, match=DTD_REFUSAL):
        parse_xml(ENTITY_DOCUMENTS[name])


def test_amplification_error_alone_is_named_hostile(without_prolog_scan) -> None:
    with pytest.raises(HostileXML, match="^Maximum entity amplification factor exceeded"):
        parse_xml(laughs(10))


def test_parser_alone_leaves_external_entities_unresolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    data = (
        f'<!DOCTYPE article [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        "<article><p>&xxe;</p></article>"
    ).encode()
    root = etree.fromstring(data, jats._parser())
    assert etree.tostring(root) == b"<article><p>&xxe;</p></article>"


def test_parser_alone_does_not_load_an_external_dtd(tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY leak "LEAKED">')
    data = f'<!DOCTYPE article SYSTEM "file://{dtd}"><article><p>&leak;</p></article>'.encode()
    root = etree.fromstring(data, jats._parser())
    assert root.getroottree().docinfo.externalDTD is None
    assert etree.tostring(root) == b"<article><p>&leak;</p></article>"


@pytest.mark.parametrize("data", [b"", b"   \n\t "])
def test_empty_input(data: bytes) -> None:
    with pytest.raises(EmptyInput):
        parse_jats(data)


def test_non_utf8_bytes_in_utf8_document() -> None:
    data = GOOD.replace(b"Chest X-ray.", "Résumé.".encode("latin-1"))
    with pytest.raises(NotUTF8) as err:
        parse_jats(data)
    assert err.value.reason == "not_utf8"


def test_declared_latin1_document_is_read() -> None:
    data = GOOD.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"').replace(
        b"Chest X-ray.", "Résumé.".encode("latin-1")
    )
    assert parse_jats(data).figures[0].caption == "Résumé."


def test_not_jats() -> None:
    with pytest.raises(NotJATS):
        parse_jats_articles(b"<html><body/></html>")
    with pytest.raises(NotJATS):
        parse_jats_articles(b"<pmc-articleset></pmc-articleset>")


# ---- packages -------------------------------------------------------------------------------


def make_tar(members: list[tuple[str, bytes, bytes]], compress: bool = True) -> bytes:
    """members: (name, data, type) with type tarfile.REGTYPE/SYMTYPE/LNKTYPE/CHRTYPE."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = data.decode()
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0) if compress else raw.getvalue()


def png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 16), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_truncated_gzip() -> None:
    data = make_tar(
        [("a/a.nxml", GOOD, tarfile.REGTYPE), ("a/f1.png", png_bytes(), tarfile.REGTYPE)]
    )
    with pytest.raises(TruncatedArchive) as err:
        read_package(data[: len(data) // 2])
    assert err.value.reason == "truncated_archive"


def test_truncated_plain_tar() -> None:
    data = make_tar([("a/a.nxml", GOOD * 20, tarfile.REGTYPE)], compress=False)
    with pytest.raises(TruncatedArchive):
        read_package(data[:700])


def test_garbage_is_not_an_archive() -> None:
    with pytest.raises(TruncatedArchive):
        read_package(b"this is not a tar file at all" * 30)


def test_unsafe_members_are_listed_never_read() -> None:
    data = make_tar(
        [
            ("a/a.nxml", GOOD, tarfile.REGTYPE),
            ("/etc/abs.txt", b"x", tarfile.REGTYPE),
            ("a/../../up.txt", b"x", tarfile.REGTYPE),
            ("a/sym.png", b"/etc/passwd", tarfile.SYMTYPE),
            ("a/hard.png", b"a/a.nxml", tarfile.LNKTYPE),
            ("a/dev", b"", tarfile.CHRTYPE),
            ("a/f1.png", png_bytes(), tarfile.REGTYPE),
        ]
    )
    contents = read_package(data)
    assert sorted(contents.files) == ["a/a.nxml", "a/f1.png"]
    assert [(n, why.split(" ")[0]) for n, why in contents.unsafe] == [
        ("/etc/abs.txt", "absolute"),
        ("a/../../up.txt", "'..'"),
        ("a/sym.png", "link"),
        ("a/hard.png", "link"),
        ("a/dev", "device"),
    ]


def _legacy_source(tmp_path: Path, package: bytes) -> tuple[PMCSource, list]:
    (tmp_path / "PMC42.tar.gz").write_bytes(package)
    source = PMCSource(str(tmp_path), {"layout": "legacy"})
    return source, list(source.discover())


def test_unsafe_member_is_a_dead_letter_and_rest_is_read(tmp_path: Path) -> None:
    package = make_tar(
        [
            ("a/a.nxml", GOOD, tarfile.REGTYPE),
            ("a/../../up.txt", b"x", tarfile.REGTYPE),
            ("a/f1.png", png_bytes(), tarfile.REGTYPE),
        ]
    )
    source, units = _legacy_source(tmp_path, package)
    out = list(source.read(units[0]))
    failed = [o for o in out if isinstance(o, Failed)]
    records = [o for o in out if isinstance(o, dict)]
    assert [(f.reason, f.source_uri.rsplit("!", 1)[1]) for f in failed] == [
        ("unsafe_archive_member", "a/../../up.txt")
    ]
    assert [(r["record_id"], r["image_format"], r["image_width"]) for r in records] == [
        ("PMC42/f1/0", "PNG", 32)
    ]
    assert not (tmp_path / "up.txt").exists() and not (tmp_path.parent / "up.txt").exists()


def test_package_without_xml(tmp_path: Path) -> None:
    source, units = _legacy_source(tmp_path, make_tar([("a/f1.png", png_bytes(), tarfile.REGTYPE)]))
    with pytest.raises(PackageWithoutXML) as err:
        list(source.read(units[0]))
    assert err.value.reason == "package_without_xml"


def test_oversized_member_is_a_dead_letter(tmp_path: Path) -> None:
    import random

    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("L", (64, 64), random.Random(0).randbytes(64 * 64)).save(buf, "PNG")
    assert len(buf.getvalue()) > len(GOOD) + 1
    package = make_tar(
        [("a/a.nxml", GOOD, tarfile.REGTYPE), ("a/f1.png", buf.getvalue(), tarfile.REGTYPE)]
    )
    (tmp_path / "PMC42.tar.gz").write_bytes(package)
    source = PMCSource(str(tmp_path), {"max_member_bytes": len(GOOD) + 1})
    out = list(source.read(next(iter(source.discover()))))
    assert [type(o).__name__ for o in out] == ["Failed", "Rejected"]
    assert (out[0].reason, out[1].reason) == ("input_too_large", "image_missing")


def test_image_that_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "PMC42.nxml").write_bytes(GOOD)
    (tmp_path / "f1.jpg").write_bytes(b"GIF89a? no: just text pretending")
    source = PMCSource(str(tmp_path))
    out = list(source.read(next(iter(source.discover()))))
    assert len(out) == 1 and isinstance(out[0], Failed)
    assert (out[0].reason, out[0].record_id, out[0].source_uri) == (
        "unreadable_image",
        "PMC42/f1/0",
        str(tmp_path / "f1.jpg"),
    )


def test_missing_image_is_rejected_with_complete_record(tmp_path: Path) -> None:
    (tmp_path / "PMC42.nxml").write_bytes(GOOD)
    source = PMCSource(str(tmp_path))
    (out,) = list(source.read(next(iter(source.discover()))))
    assert isinstance(out, Rejected) and out.reason == "image_missing"
    assert out.record["caption"] == "Chest X-ray." and out.record["image"] is None


def test_bomb_image_is_a_dead_letter(tmp_path: Path) -> None:
    (tmp_path / "PMC42.nxml").write_bytes(GOOD)
    (tmp_path / "f1.png").write_bytes(png_bytes())
    source = PMCSource(str(tmp_path), {"max_image_pixels": 100})
    (out,) = list(source.read(next(iter(source.discover()))))
    assert isinstance(out, Failed) and out.reason == "decompression_bomb"


# ---- mutated inputs never crash: a result or a named InputError -----------------------------


def mutations(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(buf)) if buf else 0
            if op < 0.5 and buf:
                buf[pos] = rng.randrange(256)
            elif op < 0.75:
                del buf[pos : pos + rng.randint(1, 16)]
            else:
                buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        out.append(bytes(buf))
    return out


def outcomes(fn, inputs: list[bytes]) -> dict[str, int]:
    """Reason of each named error (or "ok"); any other exception fails the test."""
    counts: dict[str, int] = {}
    for data in inputs:
        try:
            fn(data)
            key = "ok"
        except InputError as exc:
            key = exc.reason
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_mutated_images_give_named_errors() -> None:
    from PIL import Image

    rng = random.Random(1)
    jpeg = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(jpeg, "JPEG")
    inputs = mutations(png_bytes(), rng, 150) + mutations(jpeg.getvalue(), rng, 150)
    counts = outcomes(probe_image, inputs)
    assert sum(counts.values()) == 300
    assert set(counts) <= {"ok", "unreadable_image", "decompression_bomb"}
    assert counts.get("unreadable_image", 0) > 0


def test_mutated_jats_give_named_errors() -> None:
    counts = outcomes(parse_jats_articles, mutations(GOOD, random.Random(2), 300))
    assert sum(counts.values()) == 300
    assert set(counts) <= {
        "ok",
        "malformed_xml",
        "not_utf8",
        "not_jats",
        "hostile_xml",
        "empty_input",
    }
    assert counts.get("malformed_xml", 0) > 0


def test_mutated_packages_give_named_errors() -> None:
    package = make_tar(
        [("a/a.nxml", GOOD, tarfile.REGTYPE), ("a/f1.png", png_bytes(), tarfile.REGTYPE)]
    )
    counts = outcomes(read_package, mutations(package, random.Random(3), 150))
    assert sum(counts.values()) == 150
    assert set(counts) <= {"ok", "truncated_archive"}
    assert counts.get("truncated_archive", 0) > 0
