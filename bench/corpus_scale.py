"""Corpus segmentation on Celery workers: throughput with 1 worker and with 2.

Segments a corpus of real recordings from ../shared/data (Bengalese finch songs, about
10 s each) with ``segment-corpus --broker`` on a local Redis: once with one worker, once
with two, each worker one process of one torch thread. Each run starts from an empty
output folder after a warm-up (every worker has loaded the model), and prints its
throughput; the last line is the ratio (goal: 2 workers at least 1.7x one).

    python bench/corpus_scale.py [--files 40] [--limit N] [--model models/whisperseg-tiny]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distributed.corpus import segment_on_workers  # noqa: E402
from tests.support.live_server import SHIPPED_MODEL  # noqa: E402
from tests.support.local_cluster import RedisServer, Workers  # noqa: E402
from whisperseg.corpus import CorpusFile, segment_corpus  # noqa: E402
from whisperseg.datasets import shared_data_dir  # noqa: E402


def make_corpus(folder: Path, count: int) -> Path:
    """Links to the first ``count`` Bengalese finch recordings."""
    data = shared_data_dir()
    if data is None:
        sys.exit("../shared/data not found")
    sources = sorted((data / "bengalese_finch").glob("*.wav"))[:count]
    if len(sources) < count:
        sys.exit(f"only {len(sources)} recordings found, {count} asked for")
    folder.mkdir(parents=True)
    for source in sources:
        (folder / source.name).symlink_to(source)
    return folder


def run(template: CorpusFile, broker_url: str, out: Path) -> tuple[float, float, int]:
    """(wall seconds, audio seconds, files) of one whole run into an empty ``out``."""
    job = CorpusFile(**{**template.to_message(), "out": str(out)})
    started = time.monotonic()
    summary = segment_corpus(
        job, lambda files: segment_on_workers(files, broker_url), show_progress=False
    )
    wall = time.monotonic() - started
    if summary.failed:
        sys.exit(f"failed: {summary.failed[:3]}")
    return wall, summary.audio_s, summary.segmented


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--limit", type=int, help="fewer files, to check the bench quickly")
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    args = parser.parse_args()
    count = args.limit or args.files
    with tempfile.TemporaryDirectory(prefix="corpus-scale-") as scratch:
        root = Path(scratch)
        corpus = make_corpus(root / "corpus", count)
        warm_up = make_corpus(root / "warm-up", 4)  # a file or more for each worker
        template = CorpusFile(str(corpus), "", "", str(args.model.resolve()))
        redis = RedisServer(root / "redis")
        throughput = {}
        try:
            for workers_count in (1, 2):
                workers = Workers(redis.url, args.model.parent, root / "data", root / "logs")
                try:
                    workers.start(workers_count)
                    warm = CorpusFile(**{**template.to_message(), "root": str(warm_up)})
                    run(warm, redis.url, root / f"warm-{workers_count}")
                    wall, audio_s, files = run(template, redis.url, root / f"out-{workers_count}")
                finally:
                    workers.stop_all()
                throughput[workers_count] = audio_s / wall
                print(
                    f"{workers_count} worker(s): {files} files, {audio_s:.0f} s of audio in "
                    f"{wall:.1f} s: {audio_s / wall:.2f} s of audio per second, "
                    f"{files / wall * 60:.1f} files per minute"
                )
        finally:
            redis.stop()
    print(f"2 workers / 1 worker: {throughput[2] / throughput[1]:.2f}x (goal 1.7x)")


if __name__ == "__main__":
    main()
