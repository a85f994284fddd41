"""afx — audio-feature-explorer: music in, CLIP-styled audio-reactive CPPN videos out.

The package is a pipeline of stages (audio, cppn, guidance, train, render, encode, metrics) chained only by
`daemon.pipeline`, plus a thin service (`daemon.service`) that decides what to run and when.
"""

__version__ = "0.1.0"
