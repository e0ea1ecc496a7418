"""``python -m whisperseg segment-corpus``: every recording of a folder segmented, one
output file per recording, in this process or on Celery workers."""
