"""Segmenting uploaded audio for the server: kept, shared and background runs."""
