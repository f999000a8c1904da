"""The local provider's index: chunking by Markdown structure, hybrid retrieval, the on-disk cache,
and answers made of sentences. The real all-MiniLM-L6-v2 throughout."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from lightspeed.answers.chunking import split_document, split_sentences
from lightspeed.answers.extract import excerpts
from lightspeed.answers.index_cache import IndexCache
from lightspeed.answers.lexical import coverage, terms, weighted_terms
from lightspeed.answers.retrieval import Document, DocumentIndex, Query
from lightspeed.models.embedding import SentenceTransformerEmbedder, Vectors

GUIDE = """# The guide

The guide explains the tool. It has three parts.

## Storing things

Things are stored in the vault. Each thing gets a number. The vault is kept on disk, e.g. in
`/var/lib/vault`, and read at start. Version 0.6.0 of the format is current. A thing is never lost.

```yaml
# not a heading: a comment in a code block
vault:
  path: /var/lib/vault
```

| key | default | meaning |
|---|---|---|
| `vault_enabled` | false | whether things are stored at all |
| `vault_max_things` | 500 | the most things the vault holds |

### Removing things

Removed things go to the bin first. They stay in the bin for seven days before they are deleted for
good. To empty the bin at once, run:

    bn -x /srv/b
"""


class CountingEmbedder:
    """The real model behind our own Embedder protocol, counting the texts it is asked to embed."""

    def __init__(self, inner: SentenceTransformerEmbedder, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name
        self.dimension = inner.dimension
        self.texts = 0

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.texts += len(texts)
        return self.inner.encode(texts)

    def token_counter(self) -> Callable[[str], int]:
        return self.inner.token_counter()


def test_sections_carry_their_heading_path() -> None:
    passages = split_document(GUIDE, "guide.md", 700)
    assert [p.section for p in passages] == [
        "guide.md › The guide",
        "guide.md › Storing things",
        "guide.md › Storing things › Removing things",
    ]
    assert {p.title for p in passages} == {"The guide"}


def test_code_blocks_and_tables_stay_whole_and_passages_start_at_a_sentence() -> None:
    """With passages far shorter than the section, the code block and the table are each whole in one
    passage, a `#` line inside the code is no heading, and every passage starts with a whole sentence."""
    passages = split_document(GUIDE, "guide.md", 80)
    storing = [p for p in passages if p.section == "guide.md › Storing things"]
    assert len(storing) > 3
    code = "```yaml\n# not a heading: a comment in a code block\nvault:\n  path: /var/lib/vault\n```"
    assert sum(code in p.text for p in storing) == 1
    table = [p for p in storing if "| `vault_enabled` |" in p.text]
    assert len(table) == 1
    assert "| `vault_max_things` |" in table[0].text
    sentences = split_sentences(GUIDE.split("## Storing things\n\n")[1].split("\n\n", maxsplit=1)[0].replace("\n", " "))
    for passage in storing:
        body = passage.text.split("\n\n", 1)[1]
        assert body.startswith(("```", "|")) or any(body.startswith(s) for s in sentences), body


def test_sentences_are_not_cut_at_abbreviations_versions_or_paths() -> None:
    text = "Use a database, e.g. PostgreSQL, for many hosts. Version 0.6.0 is current. See config/app.yaml first. Done."
    assert split_sentences(text) == [
        "Use a database, e.g. PostgreSQL, for many hosts.",
        "Version 0.6.0 is current.",
        "See config/app.yaml first.",
        "Done.",
    ]


def test_units_know_what_they_lean_on() -> None:
    removing = split_document(GUIDE, "guide.md", 700)[-1]
    by_text = {u.text: u for u in removing.units}
    assert by_text["They stay in the bin for seven days before they are deleted for good."].leans_back
    assert not by_text["Removed things go to the bin first."].leans_back
    assert by_text["To empty the bin at once, run:"].leads_on
    assert [u.kind for u in removing.units][-1] == "code"


def test_terms_keep_config_keys_paths_and_codes_whole_and_by_their_words() -> None:
    made = terms("Set feedback_enabled, honour Retry-After, see spool/outbox, or get 413.")
    assert {"feedback_enabled", "feedback", "enabl", "retry-after", "retri", "spool/outbox", "413"} <= set(made)
    assert "set" in made
    assert "or" not in made  # stop words are dropped
    # Forms the stemmer leaves apart, and short names for what the documents spell out, are one term.
    assert terms("sent postgres storage env") == terms("send postgresql store environment")


@pytest.fixture
def documents() -> list[Document]:
    return [
        Document("guide.md", GUIDE),
        Document(
            "limits.md",
            "# Limits\n\n## Request size\n\nA body over the size limit is refused with 413. Raise the limit in "
            "the service section.\n\n## Pacing\n\nClients that send too fast are slowed down. They are told "
            "when to come back in a Retry-After header.\n",
        ),
        Document("kitchen.md", "# Cooking\n\nBread needs flour, water, salt and time to rise in a warm place.\n"),
    ]


@pytest.mark.parametrize(
    ("question", "citation", "text"),
    [
        # The sentence that answers starts with "They": the one it leans on comes first.
        (
            "How long do removed things stay in the bin before they are deleted?",
            "guide.md › Storing things › Removing things",
            "Removed things go to the bin first. They stay in the bin for seven days before they are deleted for good.",
        ),
        # "They are told ..." goes on from the sentence that answers: kept, though it shares no word with the question.
        (
            "what happens to clients that send too fast?",
            "limits.md › Pacing",
            "Clients that send too fast are slowed down. They are told when to come back in a Retry-After header.",
        ),
    ],
)
def test_the_answer_is_the_best_sentences_with_those_they_depend_on(
    embedder: SentenceTransformerEmbedder,
    documents: list[Document],
    tmp_path: Path,
    question: str,
    citation: str,
    text: str,
) -> None:
    """One excerpt, its citation, nothing from the other sections."""
    index = DocumentIndex(embedder, documents, 700, IndexCache(tmp_path))
    answer = excerpts(index, index.search(Query(question), 3, 0.43))
    assert [(e.citation, e.text) for e in answer] == [(citation, text)]


def test_a_sentence_that_introduces_code_brings_the_code(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    index = DocumentIndex(embedder, documents, 700, IndexCache(tmp_path))
    answer = excerpts(index, index.search(Query("how do I empty the bin right away"), 3, 0.43))
    text = "\n\n".join(e.text for e in answer)
    assert "To empty the bin at once, run:\n\n    bn -x /srv/b" in text


def test_a_long_passage_is_as_relevant_as_its_sentence_closest_to_the_question(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    """ "Storing things" is mostly about the vault; its one sentence on the format's version makes it
    the answer to a question about that, scored as that sentence is (the passage as a whole is far)."""
    index = DocumentIndex(embedder, documents, 700, IndexCache(tmp_path))
    best = index.search(Query("which version of the format is current?"), 3, 0.43).hits[0]
    assert best.passage.section == "guide.md › Storing things"
    assert best.score > 0.8


def test_a_word_the_documents_never_use_weighs_as_the_rarest(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    """A question about Kafka over a passage that has every other word of it is mostly not covered."""
    index = DocumentIndex(embedder, documents, 700, IndexCache(tmp_path))
    wanted = weighted_terms([("request size limit kafka", 1.0)])
    assert coverage(wanted, set(terms("request size limit")), index.vocabulary) < 0.7


def test_an_unrelated_question_is_below_the_threshold(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    index = DocumentIndex(embedder, documents, 700, IndexCache(tmp_path))
    refused = index.search(Query("Which football team won the cup in 2022?"), 3, 0.43)
    assert refused.hits == []
    assert excerpts(index, refused) == []
    assert refused.relevance < 0.43
    assert index.search(Query("Which football team won the cup in 2022?"), 3, 0.0).hits  # there were passages


def test_a_follow_up_is_resolved_with_the_earlier_question(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    """Alone, "and how do I change it?" is about nothing; after a question about the request size limit,
    it is answered from that section."""
    index = DocumentIndex(embedder, documents, 700, IndexCache(tmp_path))
    assert index.search(Query("and how do I change it?"), 3, 0.43).hits == []
    follow_up = index.search(Query("and how do I change it?", context="what is the request size limit?"), 3, 0.43)
    assert follow_up.hits[0].passage.section == "limits.md › Request size"
    assert "Raise the limit in the service section." in excerpts(index, follow_up)[0].text


def test_a_restart_embeds_nothing_and_a_changed_document_only_itself(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    counting = CountingEmbedder(embedder)
    cache = IndexCache(tmp_path / "cache")
    first = DocumentIndex(counting, documents, 700, cache)
    embedded = counting.texts
    assert embedded > 20

    counting.texts = 0
    again = DocumentIndex(counting, documents, 700, cache)
    assert counting.texts == 1  # the model's probe text, nothing else
    query = Query("how big may a request be?")
    assert [h.passage for h in again.search(query, 3, 0.0).hits] == [
        h.passage for h in first.search(query, 3, 0.0).hits
    ]

    changed = [*documents[:2], Document("kitchen.md", "# Cooking\n\nSoup needs water. Salt it at the end.\n")]
    counting.texts = 0
    DocumentIndex(counting, changed, 700, cache)
    kitchen = split_document(changed[2].text, "kitchen.md", 700)
    assert counting.texts == 1 + 2 * len(kitchen) + sum(len(p.units) for p in kitchen)
    model_folders = [p for p in (tmp_path / "cache").iterdir() if p.is_dir() and not p.name.startswith("lexical-")]
    assert len(model_folders) == 1
    assert len(list(model_folders[0].glob("*.npz"))) == 3  # the old kitchen.md's vectors were removed
    assert len(list((tmp_path / "cache").glob("lexical-*"))) == 1


def test_a_document_edited_in_place_with_the_same_shape_is_embedded_again(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    """Item 23.17: kitchen.md rewritten under its own name, one passage of one sentence as before: its
    passage and sentence are embedded again (not read from the cache under the old text), and found."""
    cache = IndexCache(tmp_path / "cache")
    DocumentIndex(embedder, documents, 700, cache)
    edited = Document("kitchen.md", "# Cooking\n\nPasta needs eggs, semolina and a day to dry in a cool room.\n")
    assert len(split_document(edited.text, "kitchen.md", 700)) == len(split_document(documents[2].text, "k", 700))
    counting = CountingEmbedder(embedder)
    index = DocumentIndex(counting, [*documents[:2], edited], 700, cache)
    assert counting.texts > 1  # more than the model's probe
    hit = index.search(Query("how long does pasta dry?"), 1, 0.0).hits[0]
    assert hit.passage.source == "kitchen.md"
    assert "semolina" in hit.passage.text
    fresh = DocumentIndex(embedder, [*documents[:2], edited], 700, IndexCache(None))
    assert np.allclose(index._unit_vectors, fresh._unit_vectors, atol=1e-5)


def test_another_model_gets_its_own_vectors(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    cache = IndexCache(tmp_path)
    DocumentIndex(CountingEmbedder(embedder), documents, 700, cache)
    other = CountingEmbedder(embedder, name="acme/other-model")
    DocumentIndex(other, documents, 700, cache)
    assert other.texts > 20  # same weights, another name: not taken for the first model's vectors
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith("lexical-")]) == 2


def test_a_damaged_cache_file_is_rebuilt(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    cache = IndexCache(tmp_path)
    DocumentIndex(embedder, documents, 700, cache)
    damaged = sorted(tmp_path.glob("*/*.npz"))[0]
    damaged.write_bytes(b"not a numpy file")
    counting = CountingEmbedder(embedder)
    index = DocumentIndex(counting, documents, 700, cache)
    assert counting.texts > 1
    assert index.search(Query("how big may a request be?"), 3, 0.0).hits
    assert damaged.read_bytes()[:2] == b"PK"  # written again, whole


def test_a_cache_that_cannot_be_written_leaves_the_index_in_memory(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache folder should be")
    index = DocumentIndex(embedder, documents, 700, IndexCache(blocked))
    assert index.search(Query("how big may a request be?"), 3, 0.0).hits[0].passage.source == "limits.md"
    assert blocked.read_text() == "a file where the cache folder should be"


def test_typos_are_repaired_against_the_documents_words(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    index = DocumentIndex(embedder, documents, 700, IndexCache(tmp_path))
    assert index.vocabulary.repair("how big may a reqeust bodyy be") == "how big may a request body be"


def test_typo_repair_is_bounded_per_question_and_remembered(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    """Item 23.1: past MAX_REPAIRS_PER_QUESTION unknown words a question's further words are kept as
    typed (a 900 KB question held a core for minutes); a word repaired once is repaired from memory."""
    from lightspeed.answers.lexical import MAX_REPAIRS_PER_QUESTION

    vocabulary = DocumentIndex(embedder, documents, 700, IndexCache(tmp_path)).vocabulary
    unknown = [f"zq{chr(97 + i // 26)}{chr(97 + i % 26)}xw" for i in range(MAX_REPAIRS_PER_QUESTION)]
    assert vocabulary.repair(" ".join([*unknown, "reqeust"])).split()[-1] == "reqeust"
    assert vocabulary.repair("reqeust") == "request"
    assert vocabulary.repair(" ".join([*unknown, "reqeust"])).split()[-1] == "request"


def test_the_first_index_build_logs_its_progress_and_a_cached_one_is_silent(
    embedder: SentenceTransformerEmbedder, documents: list[Document], tmp_path: Path
) -> None:
    """Not on a terminal (as here, and under systemd): `progress` events with done and total."""
    with capture_logs() as logs:
        DocumentIndex(embedder, documents, 700, IndexCache(tmp_path, progress_every=0.000001))
    progress = [(e["task"], e["done"], e["total"], e["unit"]) for e in logs if e["event"] == "progress"]
    assert progress[0] == ("indexing documents", 1, len(documents), "documents")
    assert progress[-1] == ("indexing documents", len(documents), len(documents), "documents")
    with capture_logs() as logs:
        DocumentIndex(embedder, documents, 700, IndexCache(tmp_path, progress_every=0.000001))
    assert [e for e in logs if e["event"] == "progress"] == []
