"""Polyaxonfile reading: YAML → models → loaded spec → compiled plan → lazy runs."""

from orchestrator.spec.load import LoadedSpec, load_spec, load_text
from orchestrator.spec.resolve import Plan, RunSpec, compile_plan

__all__ = ["LoadedSpec", "Plan", "RunSpec", "compile_plan", "load_spec", "load_text"]
