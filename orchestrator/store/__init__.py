"""Persistence: the SQLite journal and the layout of run folders."""
