"""Distributed mode: finetuning and segmentation jobs as Celery tasks on a Redis broker.

The server (``--broker URL``) only submits and reports; workers (``python
finetune_worker.py --broker URL ...``) run the jobs. What they share: the models
folder (each job's ``job.json``, written by the worker, read by the server), a folder
of audio under the data dir (``shared_audio``), and a few Redis keys beside the
queues (``state``: cancel flags, worker heartbeats, segmentation progress).
"""
