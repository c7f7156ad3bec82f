"""Which pages of PDFs best answer a question: full-text ranking in the instance's own database
(SQLite FTS5 in embedded mode, PostgreSQL full-text search in scaled mode), so that nothing
leaves the machine and no search service is needed. A read, not a conversation search
(``selectors.conversations_for``)."""

from __future__ import annotations

import re
import uuid
from functools import reduce
from operator import or_

from django.db import connection

from .models import UploadPage

MAX_TERMS = 32  # words of the question searched for; the rest add little to the ranking
_WORD = re.compile(r"\w+")


def _terms(question: str) -> list[str]:
    return list(dict.fromkeys(w for w in _WORD.findall(question.lower()) if len(w) > 1))[:MAX_TERMS]


def upload_pages_ranked(*, upload_ids: list[uuid.UUID], question: str) -> list[tuple[uuid.UUID, int]]:
    """(upload id, page number) of the pages of ``upload_ids`` that hold any word of
    ``question``, the most relevant first (English stemming: "sales" finds "sale")."""
    terms = _terms(question)
    if not terms or not upload_ids:
        return []
    pages = UploadPage.objects.filter(upload_id__in=upload_ids)
    if connection.vendor == "postgresql":
        return _ranked_postgres(pages, terms)
    return _ranked_sqlite(pages, terms)


def _ranked_postgres(pages, terms: list[str]) -> list[tuple[uuid.UUID, int]]:
    from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

    query = reduce(or_, (SearchQuery(term, config="english") for term in terms))
    vector = SearchVector("text", config="english")
    ranked = (
        pages.annotate(found=vector, rank=SearchRank(vector, query))
        .filter(found=query)
        .order_by("-rank", "upload_id", "number")
    )
    return list(ranked.values_list("upload_id", "number"))


def _ranked_sqlite(pages, terms: list[str]) -> list[tuple[uuid.UUID, int]]:
    # A throwaway FTS5 index of just these pages, in this connection's temporary database:
    # nothing to keep in step with the pages, nothing left once they are deleted.
    table = f"pages_{uuid.uuid4().hex}"
    rows, params = pages.values_list("text", "upload_id", "number").query.sql_with_params()
    match = " OR ".join('"{}"'.format(term.replace('"', '""')) for term in terms)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE VIRTUAL TABLE temp.{table} USING fts5(text, upload UNINDEXED, number UNINDEXED,"
            " tokenize='porter unicode61 remove_diacritics 2')"
        )
        try:
            cursor.execute(f"INSERT INTO {table} (text, upload, number) {rows}", params)
            ranked = f"SELECT upload, number FROM {table} WHERE {table} MATCH %s ORDER BY bm25({table})"
            cursor.execute(f"{ranked}, upload, number", [match])
            found = cursor.fetchall()
        finally:
            cursor.execute(f"DROP TABLE temp.{table}")
    return [(uuid.UUID(upload), number) for upload, number in found]
