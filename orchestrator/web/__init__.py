"""The web page the daemon serves: one HTML shell, plain scripts and styles, uPlot vendored.

Everything is package data under ``static/`` (no CDN, no build step): :mod:`.assets` reads it,
:mod:`.page` returns the shell, or the shell with every asset and a snapshot of data inlined
(one self-contained file that works from ``file://``).
"""
