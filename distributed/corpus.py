"""``python -m distributed segment-corpus``: a corpus segmented by Celery workers, one task
per file (``whisperseg.corpus`` plans, writes and reports; the workers segment).

Workers write the outputs into the folder they are given, so ``CORPUS`` and ``--out``
must be paths every worker sees (a shared mount); the results (segments, seconds) come
back through Redis.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Iterator

from distributed.app import SEGMENT_FILE_TASK
from distributed.broker import Broker
from jobs.record import JobsUnavailable
from whisperseg.cli import corpus_arguments, corpus_template
from whisperseg.corpus import CorpusFile, FileResult, Outcome, segment_corpus

log = logging.getLogger(__name__)


def segment_on_workers(files: list[CorpusFile], broker_url: str) -> Iterator[Outcome]:
    """Send one task per file, then collect the results in the order sent."""
    broker = Broker(broker_url)
    try:
        if not broker.reachable(broker.state.live_queues):
            log.warning("no worker is running: the files wait in the queue for one")
        queue = broker.queue_for(wants_gpu=True)
        sent = []
        for job in files:
            task_id = f"corpus-{uuid.uuid4().hex}"
            result = broker.send(SEGMENT_FILE_TASK, job.to_message(), queue, task_id, True)
            sent.append((job, result))
        for job, result in sent:
            value = result.get(propagate=False)
            if result.successful():
                yield job, FileResult(**value), None
            else:
                yield job, None, f"{type(value).__name__}: {value}"
            result.forget()
    finally:
        broker.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distributed", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser(
        "segment-corpus", help="segment every recording of a folder on the workers"
    )
    corpus_arguments(corpus)
    corpus.add_argument("--broker", required=True, help="Redis URL of the workers' broker")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    template = corpus_template(args)
    try:
        summary = segment_corpus(template, lambda files: segment_on_workers(files, args.broker))
    except JobsUnavailable as exc:
        sys.exit(f"error: {exc}")
    print(summary.text())
    return 1 if summary.failed else 0
