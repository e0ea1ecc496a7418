"""The human-in-the-loop walkthrough a notebook user follows, against a running server.

1. upload a recording, 2. label its first part by hand, 3. finetune a model on those
labels, 4. poll until it is ready, 5. let it label the rest, 6. write a CSV.

    python backend.py &                     # in another shell
    python examples/human_in_the_loop.py [--server http://127.0.0.1:8050] [--out labels.csv]

Without arguments it uses the synthetic song in example_audios/ and its true labels as
the "hand" labels of the first 10 seconds.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
SONG = HERE.parent / "example_audios" / "synthetic_song.wav"
SONG_LABELS = SONG.with_suffix(".csv")


def hand_labels(until: float) -> list[dict]:
    """The labels a person would draw in the frontend for the first ``until`` seconds."""
    with open(SONG_LABELS) as handle:
        rows = list(csv.DictReader(handle))
    return [
        {
            "onset": float(r["onset"]),
            "offset": float(r["offset"]),
            "species": "synthetic finch",
            "individual": "bird 1",
            "clustername": r["cluster"],
        }
        for r in rows
        if float(r["offset"]) <= until
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8050")
    parser.add_argument("--audio", default=str(SONG))
    parser.add_argument("--labelled-seconds", type=float, default=10.0)
    parser.add_argument("--model-name", default=f"my-finch-{int(time.time())}")
    parser.add_argument("--out", default="labels.csv")
    args = parser.parse_args()
    api = args.server.rstrip("/")

    # 1. Upload: one audio_id per channel.
    with open(args.audio, "rb") as handle:
        reply = requests.post(f"{api}/upload", files={"newAudioFile": handle}, timeout=120)
    reply.raise_for_status()
    channel = reply.json()["channels"][0]
    print(f"uploaded {args.audio}: {channel['audio_duration']:.1f} s, id {channel['audio_id']}")

    # 2. Label the first part by hand (here: the song's known labels).
    area = {"onset": 0.0, "offset": args.labelled_seconds}
    labels = hand_labels(args.labelled_seconds)
    print(f"{len(labels)} hand labels in the first {args.labelled_seconds:.0f} s")

    # 3. Finetune the shipped model on them, in the background.
    reply = requests.post(
        f"{api}/finetune-whisperseg",
        json={
            "audio_id": channel["audio_id"],
            "annotated_areas": [area],
            "human_labels": labels,
            "new_model_name": args.model_name,
            "initial_model_name": "whisperseg-tiny",
        },
        timeout=120,
    )
    if not reply.ok:
        raise SystemExit(f"finetuning refused: {reply.json()['error']}")

    # 4. Poll like the frontend (every 10 s) until the model is ready.
    while True:
        job = requests.get(f"{api}/training-jobs/{args.model_name}", timeout=30).json()
        print(f"  {job['state']:<9} {job['progress']:6.1%}  ETA {job['eta']}  loss {job['loss']}")
        if job["state"] == "done":
            break
        if job["state"] in ("failed", "cancelled"):
            raise SystemExit(f"finetuning {job['state']}: {job['error']}")
        time.sleep(10)

    # 5. Labels for the rest: human labels inside the area, the model's outside it.
    reply = requests.post(
        f"{api}/get-labels",
        json={
            "audio_id": channel["audio_id"],
            "model_name": args.model_name,
            "annotated_areas": [area],
            "human_labels": labels,
        },
        timeout=600,
    )
    reply.raise_for_status()
    result = reply.json()["labels"]

    # 6. Write them as CSV.
    columns = ["onset", "offset", "species", "individual", "clustername"]
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result)
    print(f"wrote {len(result)} labels to {args.out}")


if __name__ == "__main__":
    main()
