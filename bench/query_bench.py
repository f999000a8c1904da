"""Query latency with the local provider over about 1,000 passages, one client.

Beside it, from the same run: the retrieval the server runs for each question
(embed it with the same model, the hybrid search over the same index, the
excerpts), in-process; a plain embed + dot product for scale; and a no-op
aiohttp round trip with the same client. Targets (issue 28.3): p50 at most
1.3x the retrieval's (the handler, validation, redaction, the store, the
transcript hand-off and the event loop cost no more than 30 %), server
resident memory under 800 MB. Transcripts are on: each answer hands its
transcript to the record writer process, which fsyncs it while the answer
goes out; every one is counted on disk at the end. The three are timed in
alternating blocks, so a busy spell weighs on each alike.
"""

from __future__ import annotations

import http.client
import json
import random
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from common import children, data_volume, free_port, percentile, rss_mb, start_noop_server, start_server, stop, timed

QUESTIONS = 300
TOPICS = [
    "cluster",
    "storage",
    "network",
    "feedback",
    "transcript",
    "upgrade",
    "backup",
    "certificate",
    "logging",
    "quota",
    "scheduler",
    "registry",
    "token",
    "operator",
    "ingress",
    "volume",
]
WORDS = [
    "the",
    "a",
    "service",
    "node",
    "pod",
    "restart",
    "config",
    "file",
    "path",
    "value",
    "setting",
    "error",
    "timeout",
    "retry",
    "disk",
    "memory",
    "cpu",
    "user",
    "admin",
    "role",
    "secret",
    "key",
    "route",
    "port",
    "host",
    "proxy",
    "image",
    "build",
    "deploy",
    "rollback",
    "version",
]


def write_corpus(folder: Path, rng: random.Random) -> None:
    """100 documents of 10 sections each: about 1,000 passages."""
    folder.mkdir()
    for doc in range(100):
        topic = TOPICS[doc % len(TOPICS)]
        sections = [f"# {topic.title()} guide {doc}\n"]
        for section in range(10):
            words = " ".join(rng.choice(WORDS) for _ in range(70))
            sections.append(f"## {topic} task {section}\n\nTo handle {topic} {section}: {words}.\n")
        (folder / f"{topic}-{doc}.md").write_text("\n".join(sections))


def client_call(port: int, method: str, path: str, body_for: Callable[[int], bytes | None]) -> Callable[[int], object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(i: int) -> object:
        connection.request(method, path, body=body_for(i), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        assert response.status == 200, data
        return data

    return call


def question(i: int) -> str:
    return f"How do I handle {TOPICS[i % len(TOPICS)]} task {i % 10} after a timeout?"


def raw_pipeline(docs: Path, state_dir: Path) -> tuple[Callable[[int], object], Callable[[int], object]]:
    """The same model and passages, in-process: (the retrieval the server runs for a question, embed +
    dot product + top 3 alone), as calls. The index is built into the server's state directory, so the
    server starts with it cached."""
    import numpy as np

    from lightspeed.answers.extract import excerpts
    from lightspeed.answers.index_cache import CACHE_DIR, IndexCache
    from lightspeed.answers.retrieval import DocumentIndex, Query, read_documents
    from lightspeed.models.embedding import load_embedder
    from lightspeed_common.config import LocalProviderConfig

    local = LocalProviderConfig()
    index = DocumentIndex(load_embedder(None), read_documents(docs), 700, IndexCache(state_dir / CACHE_DIR))
    print(f"  corpus: {len(index.passages)} passages")
    vectors = index._passage_vectors

    def retrieve(i: int) -> object:
        retrieval = index.search(Query(question(i)), local.top_k, local.min_score)
        return excerpts(index, retrieval)

    def search(i: int) -> object:
        query = index.embedder.encode([question(i)])[0]
        scores = vectors @ query
        return np.argpartition(-scores, 3)[:3]

    return retrieve, search


def interleaved(calls: list[Callable[[int], object]], rounds: int = 6) -> list[list[float]]:
    """Each call timed QUESTIONS times, in `rounds` alternating blocks: a busy spell on this noisy machine
    weighs on the figure and its baseline alike."""
    block = QUESTIONS // rounds
    times: list[list[float]] = [[] for _ in calls]
    for n in range(rounds):
        for call, into in zip(calls, times, strict=True):
            into.extend(timed(lambda i, call=call, first=n * block: call(first + i), block))
    return times


def main() -> bool:
    rng = random.Random(7)
    print(f"== query: local provider, one client, {QUESTIONS} questions, transcripts on")
    with data_volume() as volume, tempfile.TemporaryDirectory(dir=volume) as tmp:
        workdir = Path(tmp)
        docs = workdir / "docs"
        write_corpus(docs, rng)
        retrieve, search = raw_pipeline(docs, workdir / "state")
        port = free_port()
        noop = start_noop_server(port)
        try:
            noop_ms = timed(client_call(port, "GET", "/liveness", lambda i: None), QUESTIONS)
        finally:
            stop(noop)
        port = free_port()
        server = start_server(workdir, docs, port)
        try:
            body = lambda i: json.dumps({"query": question(i)}).encode()  # noqa: E731
            ask = client_call(port, "POST", "/v1/query", body)
            ask(0)  # the record writer process starts with the first record
            served, raw, dot = interleaved([ask, retrieve, search])
            rss, peak = rss_mb(server.pid)
            writer_rss = sum(rss_mb(child)[0] for child in children(server.pid))
        finally:
            stop(server)
        transcripts = len(list((workdir / "transcripts").rglob("*.json")))
    p50 = statistics.median(served)
    print(
        f"  baseline retrieval (embed + hybrid search + excerpts, in-process): p50 {statistics.median(raw):6.2f} ms"
        f"  p99 {percentile(raw, 0.99):6.2f} ms"
    )
    print(f"  (embed + dot product + top 3 alone, in-process: p50 {statistics.median(dot):6.2f} ms)")
    print(f"  baseline no-op aiohttp round trip                 : p50 {statistics.median(noop_ms):6.2f} ms")
    p99 = percentile(served, 0.99)
    print(
        f"  lightspeed POST /v1/query                         : p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        f"   ({p50 / statistics.median(raw):.2f}x the retrieval, target <= 1.3x)"
    )
    print(
        f"  server resident memory: {rss:.0f} MB now, {peak:.0f} MB peak (target < 800 MB);"
        f" record writer process {writer_rss:.0f} MB; transcripts {transcripts}"
    )
    ok = p50 <= 1.3 * statistics.median(raw) and peak < 800 and transcripts == QUESTIONS + 1
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    main()
