"""WhisperSeg: segment animal vocalizations with a finetuned Whisper, without a server.

``whisperseg.model`` loads a model, ``whisperseg.segmentation`` segments a recording,
``whisperseg.adaptation`` teaches it a new species from a few labels, ``whisperseg.cli``
is the ``whisperseg`` command. Nothing here imports the annotation server.
"""
