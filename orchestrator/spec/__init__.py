"""Polyaxonfile reading: YAML → models → loaded spec → compiled plan → lazy runs."""

from orchestrator.spec.dag import DagPlan, compile_dag, is_dag
from orchestrator.spec.load import LoadedSpec, load_spec, load_text
from orchestrator.spec.resolve import Plan, RunSpec, compile_plan

__all__ = [
    "DagPlan",
    "LoadedSpec",
    "Plan",
    "RunSpec",
    "compile_dag",
    "compile_plan",
    "is_dag",
    "load_spec",
    "load_text",
]
