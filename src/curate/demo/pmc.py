"""A small, deterministic PMC-like corpus in all three layouts, for the demo and the tests.

`generate_pmc_demo(out_dir, seed)` writes::

    <out_dir>/cloud/    PMC Cloud layout (versions, retracted, not-OA, licence only in metadata)
    <out_dir>/legacy/   oa_file_list.csv (no header, like the real files) + oa_package/*.tar.gz
    <out_dir>/folder/   plain .nxml files with images beside them, plus broken files

JATS carries realistic medical figure captions (chest X-ray, CT, MRI, H&E histology,
ultrasound, ...) and body sentences citing the figures. Images are synthetic but distinct,
drawn with Pillow and numpy from the seed. Planted on purpose: an exact duplicate image in two
articles, an exact duplicate caption+image pair, near-duplicates (re-encoded at another JPEG
quality and resized), compound figures in `<fig-group>`, `<alternatives>` graphics, a figure
with two graphics, a caption-less figure, non-commercial licences, a correction article, a
missing image, and broken inputs (malformed XML, entity bomb, external entity, empty file,
non-UTF-8 bytes, truncated .tar.gz, a tar with `../`, absolute and symlink members, a package
without XML, a non-image file named .jpg).

The returned dict says what was planted, with expected counts computed while writing, so
end-to-end tests can assert exact numbers.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from curate.demo.drawing import MAKERS, encode, write_file

# ---------------------------------------------------------------------------------------------
# JATS writing


@dataclass
class Graphic:
    href: str  # as written in xlink:href
    file_name: str | None  # file written for it (None: planted missing image)
    data: bytes | None = None
    alternatives: tuple[str, ...] = ()  # further hrefs in <alternatives> (no files)
    outcome: str = "ok"  # ok | image_missing | unreadable_image
    href_not_first: bool = False


@dataclass
class Figure:
    fig_id: str
    label: str
    title: str | None
    caption_xml: str | None  # None: no <caption> element
    graphics: list[Graphic]
    group: str | None = None
    mention: str | None = None  # a body sentence citing it


@dataclass
class Article:
    pmcid: str
    pmid: str | None
    doi: str
    title: str
    journal: str
    year: int
    article_type: str = "research-article"
    license_href: str | None = "http://creativecommons.org/licenses/by/4.0/"
    license_text: str = "This is an open access article distributed under the terms of the Creative Commons Attribution License."
    figures: list[Figure] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # fig-group id -> caption
    group_mentions: dict[str, str] = field(default_factory=dict)
    write_pmcid: bool = True

    def xml(self) -> bytes:
        ids = [f'<article-id pub-id-type="doi">{escape(self.doi)}</article-id>']
        if self.write_pmcid:
            ids.insert(0, f'<article-id pub-id-type="pmc">{self.pmcid[3:]}</article-id>')
        if self.pmid:
            ids.insert(0, f'<article-id pub-id-type="pmid">{self.pmid}</article-id>')
        lic = ""
        if self.license_href or self.license_text:
            href = f' xlink:href="{self.license_href}"' if self.license_href else ""
            lic = (
                f"<permissions><copyright-year>{self.year}</copyright-year>"
                f'<license license-type="open-access"{href}><license-p>{escape(self.license_text)}'
                "</license-p></license></permissions>"
            )
        paragraphs = [
            "<p>Imaging remains central to the work-up of these patients, e.g. in the emergency "
            "setting, as described by Smith et al. in a large cohort. We report our experience.</p>"
        ]
        for fig in self.figures:
            if fig.mention:
                paragraphs.append(f"<p>{fig.mention}</p>")
        for mention in self.group_mentions.values():
            paragraphs.append(f"<p>{mention}</p>")
        floats = []
        grouped: dict[str, list[str]] = {}
        for fig in self.figures:
            xml = _fig_xml(fig)
            if fig.group:
                grouped.setdefault(fig.group, []).append(xml)
            else:
                floats.append(xml)
        for gid, figs in grouped.items():
            floats.append(
                f'<fig-group id="{gid}"><caption><p>{self.groups[gid]}</p></caption>'
                + "".join(figs)
                + "</fig-group>"
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.2 20190208//EN" "JATS-archivearticle1-mathml3.dtd">\n'
            f'<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="{self.article_type}">'
            f"<front><journal-meta><journal-title-group><journal-title>{escape(self.journal)}"
            "</journal-title></journal-title-group></journal-meta><article-meta>"
            + "".join(ids)
            + f"<title-group><article-title>{escape(self.title)}</article-title></title-group>"
            f'<pub-date pub-type="epub"><day>1</day><month>3</month><year>{self.year}</year></pub-date>'
            + lic
            + "</article-meta></front><body><sec><title>Results</title>"
            + "".join(paragraphs)
            + "".join(floats)
            + "</sec></body></article>"
        ).encode("utf-8")


def _fig_xml(fig: Figure) -> str:
    caption = ""
    if fig.caption_xml is not None:
        title = f"<title>{fig.title}</title>" if fig.title else ""
        caption = f"<caption>{title}<p>{fig.caption_xml}</p></caption>"
    graphics = []
    for g in fig.graphics:
        if g.alternatives:
            inner = "".join(f'<graphic xlink:href="{h}"/>' for h in (g.href, *g.alternatives))
            graphics.append(f"<alternatives>{inner}</alternatives>")
        elif g.href_not_first:
            graphics.append(
                f'<graphic position="anchor" id="{fig.fig_id}-g" xlink:href="{g.href}"/>'
            )
        else:
            graphics.append(f'<graphic xlink:href="{g.href}"/>')
    return (
        f'<fig id="{fig.fig_id}" position="float"><label>{fig.label}</label>{caption}'
        + "".join(graphics)
        + "</fig>"
    )


# ---------------------------------------------------------------------------------------------
# Captions with findings (realistic wording; entities for later linking stages)

# Further distinct captions per kind: figures of different images get different captions, so
# the caption near-duplicate stage has only the planted copies to find.
CAPTION_VARIANTS = {
    "xray": [
        (
            "Portable chest film.",
            "Anteroposterior portable radiograph with bilateral perihilar "
            "haziness and Kerley B lines suggesting interstitial pulmonary oedema; the cardiac "
            "silhouette is enlarged.",
        ),
        (
            "Follow-up radiograph.",
            "Frontal view obtained after chest tube placement: the left "
            "apical pneumothorax has resolved and the tube tip projects over the second rib.",
        ),
        (
            "Lateral chest view.",
            "Lateral projection demonstrating a well-defined 2 cm nodule "
            "behind the sternum, without calcification, hilar adenopathy or effusion.",
        ),
    ],
    "ct": [
        (
            "Chest CT.",
            "High-resolution computed tomography of the lungs with subpleural "
            "reticulation, traction bronchiectasis and honeycombing at both bases, a pattern of "
            "usual interstitial pneumonia.",
        ),
        (
            "Head CT.",
            "Non-contrast head CT showing an acute right subdural haematoma with "
            "midline shift of seven millimetres and effacement of the lateral ventricle.",
        ),
        (
            "CT angiography.",
            "Pulmonary CT angiogram revealing filling defects in both main "
            "pulmonary arteries compatible with saddle embolism and right ventricular strain.",
        ),
    ],
    "mri": [
        (
            "Knee MRI.",
            "Sagittal proton-density image of the knee demonstrating a complete tear "
            "of the anterior cruciate ligament with bone bruising of the lateral femoral condyle.",
        ),
        (
            "Spine MRI.",
            "Sagittal T1 and STIR sequences of the lumbar spine showing an L4-L5 disc "
            "extrusion compressing the thecal sac, without marrow oedema.",
        ),
        (
            "Cardiac MRI.",
            "Late gadolinium enhancement short-axis view with subendocardial scar "
            "in the inferior wall, indicating a previous myocardial infarction.",
        ),
    ],
    "he": [
        (
            "Liver biopsy.",
            "Periodic acid-Schiff staining of a liver core with portal fibrosis, "
            "bridging septa and interface hepatitis; scale bar 100 micrometres.",
        ),
        (
            "Lymph node.",
            "Low-power view of a lymph node effaced by nodular aggregates of large "
            "Reed-Sternberg cells within a mixed inflammatory background.",
        ),
        (
            "Skin excision.",
            "Dermal proliferation of spindle melanocytes extending to the deep "
            "margin, with a Breslow thickness of 1.8 mm on this section.",
        ),
    ],
    "us": [
        (
            "Thyroid ultrasound.",
            "Longitudinal sonogram of the thyroid showing a hypoechoic "
            "solid nodule with microcalcifications and taller-than-wide shape.",
        ),
        (
            "Renal ultrasound.",
            "Sagittal image of the left kidney with moderate hydronephrosis "
            "and a 9 mm echogenic stone casting an acoustic shadow at the pelviureteric junction.",
        ),
        (
            "Obstetric ultrasound.",
            "Transvaginal scan at eight weeks demonstrating a single "
            "intrauterine gestational sac with a yolk sac and cardiac activity.",
        ),
    ],
    "fundus": [
        (
            "Retinal photograph.",
            "Optic disc swelling with blurred margins and peripapillary "
            "flame haemorrhages in a patient with raised intracranial pressure.",
        ),
        (
            "Widefield imaging.",
            "Ultra-widefield image of the left eye with a superotemporal "
            "rhegmatogenous retinal detachment and a horseshoe tear.",
        ),
        (
            "Macular photograph.",
            "Drusen and geographic atrophy at the macula consistent with "
            "advanced dry age-related macular degeneration.",
        ),
    ],
}


def _default_caption(plan: Any, kind: str) -> tuple[str, str]:
    """The kind's first caption, then each variant once, then the first again."""
    uses = plan.__dict__.setdefault("_caption_uses", {})
    index = uses.get(kind, 0)
    uses[kind] = index + 1
    options = [CAPTIONS[kind], *CAPTION_VARIANTS.get(kind, [])]
    return options[index] if index < len(options) else options[0]


CAPTIONS = {
    "xray": (
        "Chest radiograph.",
        "Posteroanterior chest X-ray showing a right lower lobe "
        "consolidation with air bronchograms and a small ipsilateral pleural effusion; no "
        "pneumothorax is seen.",
    ),
    "ct": (
        "Contrast-enhanced CT.",
        "Axial contrast-enhanced computed tomography of the abdomen "
        "demonstrating a 3.2 cm hypodense hepatic lesion with peripheral rim enhancement "
        "(<italic>arrow</italic>), consistent with an abscess.",
    ),
    "mri": (
        "Brain MRI.",
        "Axial T2-weighted MRI (FLAIR) showing a hyperintense lesion in the "
        "left frontal lobe with surrounding vasogenic oedema and mild mass effect; "
        "T<sub>1</sub> post-contrast images showed ring enhancement.",
    ),
    "he": (
        "Histopathology.",
        "Haematoxylin and eosin (H&amp;E) stain, original magnification "
        "&#215;200, showing sheets of atypical epithelial cells with enlarged hyperchromatic "
        "nuclei and frequent mitoses, infiltrating the stroma.",
    ),
    "us": (
        "Ultrasound.",
        "Transabdominal ultrasound demonstrating an anechoic, well-circumscribed "
        "cyst with posterior acoustic enhancement in the right ovary; no solid component or "
        "internal vascularity on Doppler.",
    ),
    "fundus": (
        "Fundus photograph.",
        "Colour fundus photograph of the right eye showing "
        "scattered dot-blot haemorrhages, hard exudates and cotton-wool spots in keeping "
        "with moderate non-proliferative diabetic retinopathy.",
    ),
}


# ---------------------------------------------------------------------------------------------
# Corpus builder with accounting


class _Plan:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.counter = 0
        self.layouts: dict[str, dict[str, Any]] = {}

    def layout(self, name: str) -> dict[str, Any]:
        return self.layouts.setdefault(
            name,
            {
                "units": 0,
                "skipped": Counter(),
                "unit_errors": Counter(),
                "records": 0,
                "rejected": Counter(),
                "failed": Counter(),
                "articles_read": 0,
                "license_families": Counter(),
                "article_types": Counter(),
            },
        )

    def image(self, kind: str, fmt: str = "PNG", size: tuple[int, int] | None = None) -> bytes:
        self.counter += 1
        if size is None:
            size = (int(self.rng.integers(24, 40)) * 10, int(self.rng.integers(24, 40)) * 10)
        return encode(MAKERS[kind](self.rng, size), fmt)

    def account(self, layout: str, article: Article) -> None:
        """Expected outcome of reading one article that is not skipped."""
        stats = self.layout(layout)
        stats["articles_read"] += 1
        stats["article_types"][article.article_type] += 1
        for fig in article.figures:
            for g in fig.graphics:
                if g.outcome == "ok":
                    stats["records"] += 1
                elif g.outcome == "image_missing":
                    stats["rejected"]["image_missing"] += 1
                else:
                    stats["failed"][g.outcome] += 1


def _figure(
    plan: _Plan,
    article_key: str,
    n: int,
    kind: str,
    *,
    fmt: str = "PNG",
    data: bytes | None = None,
    caption: tuple[str, str] | None = None,
    ext: str | None = None,
    **kwargs: Any,
) -> Figure:
    title, text = caption or _default_caption(plan, kind)
    data = data if data is not None else plan.image(kind, fmt)
    ext = ext or ("jpg" if fmt == "JPEG" else "png")
    href = f"{article_key}-g{n:03d}"
    fig_kwargs = {k: kwargs.pop(k) for k in ("group", "mention") if k in kwargs}
    graphic = Graphic(href=href, file_name=f"{href}.{ext}", data=data, **kwargs)
    mention = fig_kwargs.pop("mention", None)
    if mention is None:
        mention = (
            f"On imaging, the findings were striking (Fig. {n}). The abnormality shown in "
            f'<xref ref-type="fig" rid="{article_key}-F{n}">Figure {n}</xref> was '
            "confirmed at follow-up. No complications occurred."
        )
    return Figure(
        fig_id=f"{article_key}-F{n}",
        label=f"Figure {n}",
        title=title,
        caption_xml=text,
        graphics=[graphic],
        mention=mention,
        **fig_kwargs,
    )


def _tar_gz(members: list[tuple[str, bytes | None, str]]) -> bytes:
    """Deterministic .tar.gz: (name, data, kind) with kind file | symlink (data = target)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = (data or b"").decode()
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - mirrors PMC's ?md5= checksum


# ---------------------------------------------------------------------------------------------
# The three layouts


def _ok_graphics(article: Article) -> int:
    """How many of the article's graphics should become records."""
    return sum(1 for f in article.figures for g in f.graphics if g.outcome == "ok")


def _family(article: Article) -> str:
    href = article.license_href or ""
    if "by-nc" in href:
        return "noncommercial"
    return "commercial" if href else "other"


class _CloudMirror:
    """Writes articles in the PMC Cloud layout (`<pmcid>.<version>/` with the XML, the JSON
    metadata and the media) and counts what reading each one should give."""

    def __init__(self, plan: _Plan, root: str) -> None:
        self.plan = plan
        self.root = root
        self.stats = plan.layout("cloud")

    def put(
        self,
        article: Article,
        version: int,
        *,
        retracted: bool = False,
        oa: bool = True,
        license_code: str | None = "CC BY",
        flat: bool = False,
        skip: str | None = None,
    ) -> None:
        """Write one version; `flat` also writes its JSON under `metadata/`, `skip` names why
        the reader should pass it over."""
        key = f"{article.pmcid}.{version}"
        folder = os.path.join(self.root, key)
        xml = article.xml()
        write_file(os.path.join(folder, f"{key}.xml"), xml)
        meta = {
            "pmcid": article.pmcid,
            "version": version,
            "pmid": int(article.pmid) if article.pmid else None,
            "doi": article.doi,
            "mid": None,
            "title": article.title,
            "citation": f"{article.journal}. {article.year}",
            "is_pmc_openaccess": oa,
            "is_manuscript": False,
            "is_historical_ocr": False,
            "is_retracted": retracted,
            "license_code": license_code,
            "xml_url": f"s3://pmc-oa-opendata/{key}/{key}.xml?md5={_md5(xml)}",
            "text_url": None,
            "pdf_url": None,
            "media_urls": self._write_media(article, key, folder),
        }
        blob = json.dumps(meta, indent=1, sort_keys=True).encode()
        write_file(os.path.join(folder, f"{key}.json"), blob)
        if flat:
            write_file(os.path.join(self.root, "metadata", f"{key}.json"), blob)
        self._count(article, license_code, skip)

    def _write_media(self, article: Article, key: str, folder: str) -> list[str]:
        """Write the images the mirror has; list every image the metadata promises."""
        media = []
        for fig in article.figures:
            for g in fig.graphics:
                if g.file_name:
                    media.append(
                        f"s3://pmc-oa-opendata/{key}/{g.file_name}?md5={_md5(g.data or b'')}"
                    )
                    if g.outcome != "image_missing":
                        write_file(os.path.join(folder, g.file_name), g.data or b"")
        return media

    def _count(self, article: Article, license_code: str | None, skip: str | None) -> None:
        self.stats["units"] += 1
        if skip:
            self.stats["skipped"][skip] += 1
            return
        self.plan.account("cloud", article)
        # A non-commercial code in the metadata decides when the XML names no licence.
        metadata_only_nc = "NC" in (license_code or "") and not article.license_href
        family = "noncommercial" if metadata_only_nc else _family(article)
        self.stats["license_families"][family] += _ok_graphics(article)


def _cloud_superseded_version(plan: _Plan, mirror: _CloudMirror) -> None:
    """C1: two versions; v1 (one figure) is superseded by v2 (two figures)."""
    for version in (1, 2):
        a = Article(
            "PMC9000001",
            "39000001",
            "10.5555/demo.c1",
            "Community-acquired pneumonia in adults: imaging findings",
            "Demo Journal of Radiology",
            2025,
        )
        a.figures = [_figure(plan, "c1", 1, "xray", fmt="JPEG"), _figure(plan, "c1", 2, "ct")]
        if version == 1:
            a.figures = a.figures[:1]
        mirror.put(a, version, flat=True, skip="superseded_version" if version == 1 else None)


def _cloud_fig_group(plan: _Plan, mirror: _CloudMirror) -> None:
    """C2: a compound figure in a fig-group, cited through the group id."""
    a = Article(
        "PMC9000002",
        "39000002",
        "10.5555/demo.c2",
        "Multimodal imaging of a liver abscess",
        "Demo Case Reports",
        2024,
    )
    a.groups = {"c2-G1": "Compound figure: CT and ultrasound of the same hepatic lesion."}
    a.group_mentions = {
        "c2-G1": 'Both modalities agreed (<xref ref-type="fig" rid="c2-G1">Figure 1</xref>).'
    }
    a.figures = [
        _figure(plan, "c2", 1, "ct", group="c2-G1"),
        _figure(plan, "c2", 2, "us", group="c2-G1", fmt="JPEG"),
    ]
    mirror.put(a, 1)


def _cloud_alternatives(plan: _Plan, mirror: _CloudMirror) -> None:
    """C3: `<alternatives>` graphics (TIFF original absent, web JPEG present), three versions."""
    for version in (1, 2, 3):
        a = Article(
            "PMC9000003",
            None,
            "10.5555/demo.c3",
            "Diabetic retinopathy screening",
            "Demo Ophthalmology",
            2026,
        )
        fig = _figure(plan, "c3", 1, "fundus", fmt="JPEG")
        g = fig.graphics[0]
        fig.graphics = [
            Graphic(
                href=f"{g.href}.tif", file_name=g.file_name, data=g.data, alternatives=(g.href,)
            )
        ]
        a.figures = [fig]
        mirror.put(a, version, skip="superseded_version" if version < 3 else None)


def _cloud_retracted_and_not_open_access(plan: _Plan, mirror: _CloudMirror) -> None:
    """C4: a retracted article; C5: an author manuscript outside the OA subset (TDM)."""
    a = Article(
        "PMC9000004",
        "39000004",
        "10.5555/demo.c4",
        "A retracted imaging study",
        "Demo Journal of Radiology",
        2023,
    )
    a.figures = [_figure(plan, "c4", 1, "mri")]
    mirror.put(a, 1, retracted=True, skip="retracted")
    a = Article(
        "PMC9000005", "39000005", "10.5555/demo.c5", "An author manuscript", "Demo Neurology", 2022
    )
    a.figures = [_figure(plan, "c5", 1, "mri")]
    mirror.put(a, 1, oa=False, license_code="TDM", skip="not_open_access")


def _cloud_metadata_only_licence(plan: _Plan, mirror: _CloudMirror) -> str:
    """C6: the licence only in the metadata (CC BY-NC) and the second figure's image missing
    from the mirror. Returns the PMCID."""
    a = Article(
        "PMC9000006",
        "39000006",
        "10.5555/demo.c6",
        "Breast ultrasound and pathology correlation",
        "Demo Womens Imaging",
        2025,
        license_href=None,
        license_text="",
    )
    a.figures = [
        _figure(plan, "c6", 1, "us"),
        _figure(plan, "c6", 2, "he", outcome="image_missing"),
    ]
    mirror.put(a, 1, license_code="CC BY-NC")
    return a.pmcid


def _cloud_correction(plan: _Plan, mirror: _CloudMirror) -> None:
    """C7: a correction notice (article-type correction) that still carries a figure."""
    a = Article(
        "PMC9000007",
        "39000007",
        "10.5555/demo.c7",
        "Correction: Brain MRI in multiple sclerosis",
        "Demo Neurology",
        2025,
        article_type="correction",
    )
    a.figures = [_figure(plan, "c7", 1, "mri")]
    mirror.put(a, 1)


def _cloud_duplicates(plan: _Plan, mirror: _CloudMirror, shared: dict[str, Any]) -> None:
    """C8: planted duplicates: an exact image shared with legacy L1, an exact caption+image
    pair shared with folder F3."""
    a = Article(
        "PMC9000008",
        "39000008",
        "10.5555/demo.c8",
        "Thoracic imaging teaching cases",
        "Demo Journal of Radiology",
        2024,
    )
    a.figures = [
        _figure(
            plan,
            "c8",
            1,
            "xray",
            data=shared["dup_image"],
            ext="png",
            caption=(
                "Teaching case 1.",
                "Frontal chest radiograph with bilateral hilar "
                "lymphadenopathy, suggestive of sarcoidosis.",
            ),
        ),
        _figure(plan, "c8", 2, "ct", data=shared["pair_image"], caption=shared["pair_caption"]),
    ]
    mirror.put(a, 1)


def _cloud(plan: _Plan, root: str, shared: dict[str, Any]) -> None:
    """The PMC Cloud layout, articles C1-C8 in this order (each draws from the plan's RNG)."""
    mirror = _CloudMirror(plan, root)
    _cloud_superseded_version(plan, mirror)
    _cloud_fig_group(plan, mirror)
    _cloud_alternatives(plan, mirror)
    _cloud_retracted_and_not_open_access(plan, mirror)
    shared["metadata_only_license"] = _cloud_metadata_only_licence(plan, mirror)
    _cloud_correction(plan, mirror)
    _cloud_duplicates(plan, mirror, shared)


# The legacy file list's "last updated" column, the same for every row.
_LEGACY_UPDATED = "2024-01-02 03:04:05"


def _package_path(pmcid: str) -> str:
    return f"oa_package/{pmcid[-2:]}/{pmcid[-4:-2]}/{pmcid}.tar.gz"


def _package_members(article: Article, key: str) -> list[tuple[str, bytes | None, str]]:
    """The article's XML and the images the package has, under folder `key`."""
    out: list[tuple[str, bytes | None, str]] = [(f"{key}/{key}.nxml", article.xml(), "file")]
    for fig in article.figures:
        for g in fig.graphics:
            if g.file_name and g.outcome != "image_missing":
                out.append((f"{key}/{g.file_name}", g.data, "file"))
    return out


class _LegacyMirror:
    """Writes `oa_package/**.tar.gz` packages and the rows of `oa_file_list.csv` that name
    them, counting what reading each one should give."""

    def __init__(self, plan: _Plan, root: str) -> None:
        self.plan = plan
        self.root = root
        self.stats = plan.layout("legacy")
        self.rows: list[list[str]] = []

    def package(
        self,
        pmcid: str,
        members: list[tuple[str, bytes | None, str]],
        *,
        license_: str,
        article: Article | None,
        error: str | None = None,
        unsafe: int = 0,
        truncate: bool = False,
    ) -> None:
        """One package: `error` is the unit error reading it should raise, `unsafe` how many
        members the reader must refuse, `truncate` cuts the .tar.gz short."""
        rel = _package_path(pmcid)
        data = _tar_gz(members)
        if truncate:
            data = data[: len(data) * 3 // 5]
        write_file(os.path.join(self.root, rel), data)
        pmid = article.pmid if article and article.pmid else ""
        self.rows.append([rel, f"Demo J. {pmcid}", pmcid, _LEGACY_UPDATED, pmid, license_])
        self.stats["units"] += 1
        if error:
            self.stats["unit_errors"][error] += 1
            return
        self.stats["failed"]["unsafe_archive_member"] += unsafe
        assert article is not None
        self.plan.account("legacy", article)
        self.stats["license_families"][_family(article)] += _ok_graphics(article)

    def list_absent(self, pmcid: str) -> None:
        """A file-list row whose package the mirror lacks."""
        row = [_package_path(pmcid), "Demo J. absent", pmcid, _LEGACY_UPDATED, "", "CC BY"]
        self.rows.append(row)
        self.stats["units"] += 1
        self.stats["skipped"]["package_absent"] += 1

    def write_file_list(self) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(self.rows)  # no header, like the real file
        write_file(os.path.join(self.root, "oa_file_list.csv"), text.getvalue().encode())


def _legacy_duplicate_image(plan: _Plan, mirror: _LegacyMirror, shared: dict[str, Any]) -> None:
    """L1: the exact duplicate image (shared with C8) and a figure with two graphics."""
    a = Article(
        "PMC9100001",
        "39100001",
        "10.5555/demo.l1",
        "Sarcoidosis: a pictorial review",
        "Demo Chest",
        2021,
    )
    f1 = _figure(
        plan,
        "l1",
        1,
        "xray",
        data=shared["dup_image"],
        caption=(
            "Stage II sarcoidosis.",
            "Chest X-ray showing bilateral hilar "
            "adenopathy with reticulonodular opacities in both upper zones.",
        ),
    )
    f2 = _figure(plan, "l1", 2, "ct")
    f2.graphics.append(Graphic(href="l1-g002b", file_name="l1-g002b.png", data=plan.image("ct")))
    a.figures = [f1, f2]
    mirror.package("PMC9100001", _package_members(a, "PMC9100001"), license_="CC BY", article=a)


def _legacy_captionless(plan: _Plan, mirror: _LegacyMirror) -> str:
    """L2: a non-commercial licence; a caption-less figure right after a captioned one.
    Returns the caption-less record's id."""
    a = Article(
        "PMC9100002",
        "39100002",
        "10.5555/demo.l2",
        "Renal cell carcinoma: CT and histology",
        "Demo Urology",
        2020,
        license_href="http://creativecommons.org/licenses/by-nc-nd/4.0/",
        license_text="This work is licensed under a Creative Commons Attribution-"
        "NonCommercial-NoDerivatives 4.0 International License.",
    )
    bare = _figure(plan, "l2", 2, "he")
    bare.caption_xml = None
    bare.title = None
    a.figures = [_figure(plan, "l2", 1, "ct"), bare]
    mirror.package(
        "PMC9100002", _package_members(a, "PMC9100002"), license_="CC BY-NC-ND", article=a
    )
    return "PMC9100002/l2-F2/0"


def _legacy_tif_and_jpg(plan: _Plan, mirror: _LegacyMirror) -> str:
    """L3: the same figure as TIFF and JPEG in the package; the JPEG must be chosen. Returns
    the record's id."""
    a = Article(
        "PMC9100003", "39100003", "10.5555/demo.l3", "Hepatic MRI", "Demo Abdominal Radiology", 2019
    )
    fig = _figure(plan, "l3", 1, "mri", fmt="JPEG")
    a.figures = [fig]
    tif = io.BytesIO()
    Image.open(io.BytesIO(fig.graphics[0].data or b"")).save(tif, "TIFF")
    members = _package_members(a, "PMC9100003")
    members.append(("PMC9100003/l3-g001.tif", tif.getvalue(), "file"))
    mirror.package("PMC9100003", members, license_="CC BY", article=a)
    return "PMC9100003/l3-F1/0"


def _legacy_near_duplicates(plan: _Plan, mirror: _LegacyMirror, shared: dict[str, Any]) -> None:
    """L4: near-duplicates of C1's chest X-ray: re-encoded, and resized and re-encoded."""
    base = Image.open(io.BytesIO(shared["near_source"]))
    small = base.resize((base.width * 4 // 5, base.height * 4 // 5), Image.Resampling.BICUBIC)
    a = Article(
        "PMC9100004",
        "39100004",
        "10.5555/demo.l4",
        "Pneumonia follow-up imaging",
        "Demo Chest",
        2022,
    )
    a.figures = [
        _figure(plan, "l4", 1, "xray", data=encode(base, "JPEG", quality=55), ext="jpg"),
        _figure(plan, "l4", 2, "xray", data=encode(small, "JPEG", quality=80), ext="jpg"),
    ]
    shared["near_duplicates"] = [
        [shared["near_source_record"], "PMC9100004/l4-F1/0"],
        [shared["near_source_record"], "PMC9100004/l4-F2/0"],
    ]
    mirror.package("PMC9100004", _package_members(a, "PMC9100004"), license_="CC BY", article=a)


def _legacy_broken_packages(plan: _Plan, mirror: _LegacyMirror) -> None:
    """L5: a truncated .tar.gz; L6: unsafe members (.., absolute path, symlink) beside a good
    article; L7: a package without any XML."""
    a = Article("PMC9100005", "39100005", "10.5555/demo.l5", "Truncated package", "Demo", 2020)
    a.figures = [_figure(plan, "l5", 1, "us")]
    mirror.package(
        "PMC9100005",
        _package_members(a, "PMC9100005"),
        license_="CC BY",
        article=a,
        error="truncated_archive",
        truncate=True,
    )
    a = Article(
        "PMC9100006",
        "39100006",
        "10.5555/demo.l6",
        "Thyroid ultrasound",
        "Demo Endocrine Imaging",
        2021,
    )
    a.figures = [_figure(plan, "l6", 1, "us")]
    members = _package_members(a, "PMC9100006") + [
        ("PMC9100006/../../escape.txt", b"should never be read", "file"),
        ("/tmp/absolute.txt", b"should never be read", "file"),
        ("PMC9100006/l6-link.jpg", b"/etc/passwd", "symlink"),
    ]
    mirror.package("PMC9100006", members, license_="CC BY", article=a, unsafe=3)
    a = Article("PMC9100007", None, "10.5555/demo.l7", "No XML", "Demo", 2020)
    a.figures = [_figure(plan, "l7", 1, "ct")]
    mirror.package(
        "PMC9100007",
        _package_members(a, "PMC9100007")[1:],
        license_="CC BY",
        article=a,
        error="package_without_xml",
    )


def _legacy(plan: _Plan, root: str, shared: dict[str, Any]) -> None:
    """The legacy OA layout, packages L1-L7 in this order, then a listed but absent package."""
    mirror = _LegacyMirror(plan, root)
    _legacy_duplicate_image(plan, mirror, shared)
    shared["captionless_record"] = _legacy_captionless(plan, mirror)
    shared["tif_and_jpg_record"] = _legacy_tif_and_jpg(plan, mirror)
    _legacy_near_duplicates(plan, mirror, shared)
    _legacy_broken_packages(plan, mirror)
    mirror.list_absent("PMC9100099")
    mirror.write_file_list()


class _FolderTree:
    """Writes `.nxml` files with their images beside them, counting what reading each gives."""

    def __init__(self, plan: _Plan, root: str) -> None:
        self.plan = plan
        self.root = root
        self.stats = plan.layout("folder")

    def article(self, rel: str, article: Article) -> None:
        write_file(os.path.join(self.root, rel), article.xml())
        folder = os.path.dirname(os.path.join(self.root, rel))
        for fig in article.figures:
            for g in fig.graphics:
                if g.file_name and g.outcome != "image_missing":
                    write_file(os.path.join(folder, g.file_name), g.data or b"")
        self.stats["units"] += 1
        self.plan.account("folder", article)
        self.stats["license_families"][_family(article)] += _ok_graphics(article)

    def broken(self, rel: str, data: bytes, reason: str) -> None:
        """A file that fails as one unit with the named reason."""
        write_file(os.path.join(self.root, rel), data)
        self.stats["units"] += 1
        self.stats["unit_errors"][reason] += 1


def _folder_articles(plan: _Plan, tree: _FolderTree, shared: dict[str, Any]) -> None:
    """F1: a non-image file named .jpg, the PMCID only in the file name; F2: a deeper folder,
    xlink:href not the graphic's first attribute, non-commercial; F3: the exact duplicate
    caption+image pair with C8 figure 2."""
    a = Article(
        "PMC9200001",
        "39200001",
        "10.5555/demo.f1",
        "Knee MRI and radiographs",
        "Demo Musculoskeletal",
        2023,
        write_pmcid=False,
    )
    a.figures = [
        _figure(plan, "f1", 1, "mri"),
        _figure(
            plan,
            "f1",
            2,
            "xray",
            data=b"<html>not an image</html>",
            ext="jpg",
            outcome="unreadable_image",
        ),
    ]
    tree.article("PMC9200001.nxml", a)
    a = Article(
        "PMC9200002",
        "39200002",
        "10.5555/demo.f2",
        "Obstetric ultrasound",
        "Demo Obstetrics",
        2022,
        license_href="https://creativecommons.org/licenses/by-nc/4.0/",
        license_text="Creative Commons Attribution-NonCommercial 4.0",
    )
    a.figures = [
        _figure(plan, "f2", 1, "us", href_not_first=True),
        _figure(plan, "f2", 2, "fundus", fmt="JPEG"),
    ]
    tree.article("journal_a/2022/PMC9200002.nxml", a)
    a = Article(
        "PMC9200003",
        "39200003",
        "10.5555/demo.f3",
        "Abdominal CT atlas",
        "Demo Journal of Radiology",
        2024,
    )
    a.figures = [
        _figure(plan, "f3", 1, "ct", data=shared["pair_image"], caption=shared["pair_caption"]),
        _figure(plan, "f3", 2, "he", fmt="JPEG"),
    ]
    tree.article("journal_b/PMC9200003.nxml", a)


# Broken files of the folder layout: path -> (bytes, the unit error reading it must give).
_BROKEN_FILES = {
    "broken/malformed.xml": (
        b'<?xml version="1.0"?><article><front><article-meta><title-group><article-title>Unclosed',
        "malformed_xml",
    ),
    "broken/bomb.xml": (
        b'<?xml version="1.0"?>\n<!DOCTYPE article [\n<!ENTITY lol "lol">\n'
        + b"".join(
            b'<!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
            for i in range(1, 10)
        )
        + b"]>\n<article><body><p>&lol9;</p></body></article>\n",
        "hostile_xml",
    ),
    "broken/xxe.xml": (
        b'<?xml version="1.0"?>\n<!DOCTYPE article [<!ENTITY xxe SYSTEM '
        b'"file:///etc/passwd">]>\n<article><body><p>&xxe;</p></body></article>',
        "hostile_xml",
    ),
    "broken/empty.xml": (b"", "empty_input"),
    "broken/latin1.xml": (
        (
            '<?xml version="1.0" encoding="UTF-8"?><article><front><article-meta>'
            "<title-group><article-title>Résumé of Ménière disease</article-title>"
            "</title-group></article-meta></front></article>"
        ).encode("latin-1"),
        "not_utf8",
    ),
    "broken/not_jats.xml": (
        b'<?xml version="1.0"?><html><body>hello</body></html>',
        "not_jats",
    ),
}


def _folder(plan: _Plan, root: str, shared: dict[str, Any]) -> None:
    """The plain-folder layout: articles F1-F3, then the broken files."""
    tree = _FolderTree(plan, root)
    _folder_articles(plan, tree, shared)
    for rel, (data, reason) in _BROKEN_FILES.items():
        tree.broken(rel, data, reason)


def _plain(stats: dict[str, Any]) -> dict[str, Any]:
    """Counters as plain dicts with sorted keys (the planted dict is stored as JSON)."""
    return {k: dict(sorted(v.items())) if isinstance(v, Counter) else v for k, v in stats.items()}


def _totals(plan: _Plan) -> dict[str, Any]:
    """The three layouts' expected counts added up."""
    totals: dict[str, Any] = {"units": 0, "records": 0}
    for key in (
        "skipped",
        "unit_errors",
        "rejected",
        "failed",
        "license_families",
        "article_types",
    ):
        merged: Counter = Counter()
        for stats in plan.layouts.values():
            merged.update(stats[key])
        totals[key] = dict(sorted(merged.items()))
    for stats in plan.layouts.values():
        totals["units"] += stats["units"]
        totals["records"] += stats["records"]
    return totals


def generate_pmc_demo(out_dir: str, seed: int = 0) -> dict[str, Any]:
    """Write the demo corpus under `out_dir` and return what was planted (expected counts)."""
    plan = _Plan(seed)
    shared: dict[str, Any] = {
        "dup_image": plan.image("xray", "PNG"),
        "pair_image": plan.image("ct", "PNG"),
        "pair_caption": (
            "Hepatic abscess.",
            "Axial contrast-enhanced CT showing a multiloculated "
            "hypodense lesion in segment VII of the liver with rim enhancement.",
        ),
    }
    roots = {name: os.path.join(out_dir, name) for name in ("cloud", "legacy", "folder")}
    _cloud(plan, roots["cloud"], shared)
    # Near-duplicate source: C1 v2 figure 1 (a JPEG chest X-ray), re-read from disk.
    near_path = os.path.join(roots["cloud"], "PMC9000001.2", "c1-g001.jpg")
    with open(near_path, "rb") as handle:
        shared["near_source"] = handle.read()
    shared["near_source_record"] = "PMC9000001/c1-F1/0"
    _legacy(plan, roots["legacy"], shared)
    _folder(plan, roots["folder"], shared)
    layouts = {name: {"path": roots[name], **_plain(stats)} for name, stats in plan.layouts.items()}
    return {
        "seed": seed,
        "root": out_dir,
        "layouts": layouts,
        "totals": _totals(plan),
        # Same image bytes in two articles (different captions).
        "exact_duplicate_images": [["PMC9000008/c8-F1/0", "PMC9100001/l1-F1/0"]],
        # Same caption and same image bytes in two articles.
        "exact_duplicate_pairs": [["PMC9000008/c8-F2/0", "PMC9200003/f3-F1/0"]],
        "near_duplicates": shared["near_duplicates"],
        "captionless_record": shared["captionless_record"],
        "tif_and_jpg_record": shared["tif_and_jpg_record"],
        "metadata_only_license": shared["metadata_only_license"],
        "fig_group_records": ["PMC9000002/c2-F1/0", "PMC9000002/c2-F2/0"],
        "alternatives_record": "PMC9000003/c3-F1/0",
        "multi_graphic_records": ["PMC9100001/l1-F2/0", "PMC9100001/l1-F2/1"],
    }
