"""Tiny scripts run as real subprocesses (with sys.executable) by the tests."""
