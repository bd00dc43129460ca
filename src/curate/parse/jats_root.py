"""Find the JATS articles in a parsed document, whatever wraps them and whatever namespace.

Real-world shapes (each tested on real articles transformed in memory):

* a bare `<article>`, with no namespace (PMC OA, publishers) or in a JATS/NLM namespace
  (`https://jats.nlm.nih.gov/ns/archiving/1.3/`, `https://dtd.nlm.nih.gov/ns/archiving/2.3/`,
  NLM 3.0 URIs: older archives and OAI-PMH harvests deliver these);
* an article set: eFetch's `<pmc-articleset>`, `<articles>`, `<article-set>`;
* an OAI-PMH response (`http://www.openarchives.org/OAI/2.0/`): `GetRecord` holds one
  `record/metadata/article`, `ListRecords` many. Deleted records (a header without metadata)
  hold no article; an OAI `<error>` response is refused with its code.

A namespaced article is brought to the un-namespaced form the parser reads: its own
namespace is removed from the tags of the article's elements (one pass over the article),
so every lookup (`fig`, `caption`, article-meta, licence, graphics) works unchanged. Other
namespaces stay as they are: `xlink:href`, MathML and `ali:license_ref` keep working.
An `<article>` in a namespace that is not JATS/NLM (DocBook, a publisher's own DTD) is
refused as `NotJATS` rather than parsed into an article with no figures.
"""

from __future__ import annotations

import re
from typing import Any

from curate.errors import NotJATS

ARTICLE_SET_ROOTS = frozenset({"pmc-articleset", "articles", "article-set"})
OAI_PMH = "http://www.openarchives.org/OAI/2.0/"
_OAI = "{" + OAI_PMH + "}"
_OAI_RECORDS = (f"{_OAI}GetRecord/{_OAI}record", f"{_OAI}ListRecords/{_OAI}record")
# JATS and NLM namespace URIs live under nlm.nih.gov (dtd., jats., www.ncbi.); other JATS
# deployments name JATS in the URI.
_JATS_NAMESPACE = re.compile(r"^https?://(?:[A-Za-z0-9-]+\.)*nlm\.nih\.gov/|jats", re.IGNORECASE)


def namespace_of(tag: Any) -> str:
    return tag[1:].partition("}")[0] if isinstance(tag, str) and tag[:1] == "{" else ""


def local_name(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2] if tag[:1] == "{" else tag


def _without_namespace(article: Any, envelope: str = "") -> Any:
    """The article with its own (JATS) namespace removed from its elements' tags.

    `envelope` is the namespace of a wrapper whose default namespace an article that declares
    none inherits (an `<article>` written without `xmlns` inside an OAI-PMH response)."""
    namespace = namespace_of(article.tag)
    if not namespace:
        return article
    if namespace != envelope and not _JATS_NAMESPACE.search(namespace):
        raise NotJATS(f"<article> is in namespace {namespace}, not a JATS/NLM namespace")
    prefix = "{" + namespace + "}"
    cut = len(prefix)
    for el in article.iter(prefix + "*"):
        el.tag = el.tag[cut:]
    return article


def _set_members(root: Any) -> list[Any]:
    return [child for child in root if local_name(child.tag) == "article"]


def _oai_articles(root: Any) -> list[Any]:
    error = root.find(f"{_OAI}error")
    if error is not None:
        code = error.get("code") or "unknown"
        raise NotJATS(f"OAI-PMH error {code}: {(error.text or '').strip() or 'no message'}")
    articles: list[Any] = []
    deleted = 0
    for path in _OAI_RECORDS:
        for record in root.iterfind(path):
            metadata = record.find(f"{_OAI}metadata")
            if metadata is None:  # a deleted record: header only, nothing to read
                deleted += 1
                continue
            for child in metadata:
                name = local_name(child.tag)
                if name == "article":
                    articles.append(child)
                elif name in ARTICLE_SET_ROOTS:
                    articles.extend(_set_members(child))
                elif name:
                    raise NotJATS(
                        f"OAI-PMH record metadata is <{name}>, not <article> "
                        "(harvest with a JATS metadataPrefix such as pmc)"
                    )
    if not articles:
        raise NotJATS(f"OAI-PMH response holds no <article> ({deleted} deleted records)")
    return articles


def article_elements(root: Any) -> list[Any]:
    """The document's articles, un-namespaced, in document order; `NotJATS` when none."""
    name = local_name(root.tag)
    if name == "article":
        return [_without_namespace(root)]
    if name == "OAI-PMH" and namespace_of(root.tag) == OAI_PMH:
        return [_without_namespace(a, OAI_PMH) for a in _oai_articles(root)]
    if name in ARTICLE_SET_ROOTS:
        articles = _set_members(root)
        if articles:
            return [_without_namespace(a, namespace_of(root.tag)) for a in articles]
    raise NotJATS(
        f"root element is <{name or root.tag}>, not <article> "
        "(or an article set, or an OAI-PMH response)"
    )
