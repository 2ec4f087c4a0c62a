"""Help-center search over a folder of Markdown articles, ranked by SQLite FTS5's BM25."""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache
from pathlib import Path

from support_agent.models import Article

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "kb"
_WORD = re.compile(r"[\w']+", re.UNICODE)


class MarkdownKnowledgeBase:
    """An in-memory FTS5 index of `*.md` files; the first `# ` line is the title."""

    def __init__(self, folder: Path, base_url: str = "https://help.acme.example/articles/") -> None:
        self.folder = folder
        self.base_url = base_url
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.execute(
            "CREATE VIRTUAL TABLE articles USING fts5(id UNINDEXED, title, body, tokenize='porter')"
        )
        self._bodies: dict[str, str] = {}
        for path in sorted(folder.glob("*.md")):
            text = path.read_text(encoding="utf-8")
            title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), path.stem)
            self._bodies[path.stem] = text
            self.db.execute("INSERT INTO articles VALUES (?, ?, ?)", (path.stem, title, text))

    @classmethod
    def bundled(cls) -> MarkdownKnowledgeBase:
        """The help center that ships with the layer (indexed once per process)."""
        return cls.at(BUNDLED)

    @classmethod
    @lru_cache(maxsize=4)
    def at(cls, folder: Path) -> MarkdownKnowledgeBase:
        """The help center in `folder` (a company's own articles), indexed once per process."""
        return cls(folder)

    def __len__(self) -> int:
        return len(self._bodies)

    def search(self, query: str, limit: int = 3) -> list[Article]:
        """Best articles for a free-text query (words are OR-ed; titles weigh three times the body)."""
        words = [w for w in _WORD.findall(query.lower()) if len(w) > 2][:20]
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in words)
        rows = self.db.execute(
            "SELECT id, title, snippet(articles, 2, '', '', ' … ', 24), bm25(articles, 0, 3.0, 1.0) AS rank "
            "FROM articles WHERE articles MATCH ? ORDER BY rank LIMIT ?",
            (match, limit),
        ).fetchall()
        return [
            Article(id=r[0], title=r[1], snippet=r[2], url=self.base_url + r[0], score=round(-float(r[3]), 3))
            for r in rows
        ]

    def get(self, article_id: str) -> str | None:
        """Full Markdown of one article."""
        return self._bodies.get(article_id)
