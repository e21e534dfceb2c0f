"""Resource requests: Kubernetes quantities, and what a polyaxonfile's container asks for."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec.load import load_text
from orchestrator.spec.resources import (
    ResourceRequest,
    format_bytes,
    parse_quantity,
    spec_request,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        (2, Decimal(2)),
        ("0.5", Decimal("0.5")),
        (0.5, Decimal("0.5")),
        ("4Gi", Decimal(4 * 2**30)),
        ("512M", Decimal(512 * 10**6)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        (128974848, Decimal(128974848)),
        ("129e6", Decimal(129 * 10**6)),
        ("123Mi", Decimal(123 * 2**20)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("100k", Decimal(100_000)),
        (".5", Decimal("0.5")),
        ("+1", Decimal(1)),
        ("0", Decimal(0)),
    ],
)
def test_quantities_as_kubernetes_writes_them(text: Any, expected: Decimal) -> None:
    assert parse_quantity(text, "f") == expected


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "1Qi",
        "1ki",
        "Gi",
        "",
        "1 Gi",
        "4GB",
        "1e",
        "--1",
        True,
        None,
        [1],
        float("inf"),
        "9" * 100,
    ],
)
def test_a_bad_quantity_is_one_line_naming_the_field(text: Any) -> None:
    with pytest.raises(SpecError) as info:
        parse_quantity(text, "run.container.resources.limits.memory")
    message = str(info.value)
    assert message.startswith("run.container.resources.limits.memory: expected a quantity")
    assert "\n" not in message


def test_a_negative_quantity_is_refused() -> None:
    with pytest.raises(SpecError, match="at least 0"):
        parse_quantity("-1", "cpu")


def component(resources: str) -> str:
    body = textwrap.indent(textwrap.dedent(resources).strip(), " " * 6)
    return (
        "version: 1.1\nkind: component\nrun:\n  kind: job\n  container:\n"
        "    command: [python, -c, pass]\n    resources:\n" + body + "\n"
    )


def request(resources: str) -> ResourceRequest:
    loaded = load_text(component(resources), "spec.yaml", Path("."))
    return spec_request(loaded.component)


def test_limits_of_a_polyaxonfile() -> None:
    got = request(
        """
        limits: {nvidia.com/gpu: 1, cpu: 500m, memory: 4Gi}
        requests: {cpu: 250m, memory: 1Gi}
        """
    )
    assert (got.gpu_milli, got.cpu_milli, got.memory) == (1000, 500, 4 * 2**30)
    assert got.describe() == {"gpus": 1.0, "cpu": 0.5, "memory": 4 * 2**30}
    assert str(got) == "1 GPU, 0.5 CPU, 4Gi memory"


def test_requests_count_where_limits_are_silent() -> None:
    got = request("requests: {nvidia.com/gpu: 2, cpu: '2', memory: 512M}")
    assert (got.gpu_milli, got.cpu_milli, got.memory) == (2000, 2000, 512 * 10**6)
    assert got.whole_gpus == 2


@pytest.mark.parametrize(("value", "milli"), [("0.5", 500), ("250m", 250), ("0.333", 333)])
def test_a_share_of_one_card(value: str, milli: int) -> None:
    got = request(f"limits: {{nvidia.com/gpu: {value}}}")
    assert got.gpu_milli == milli
    assert got.whole_gpus == 0


def test_no_resources_is_an_empty_request() -> None:
    loaded = load_text(
        "version: 1.1\nkind: component\nrun: {kind: job, container: {command: [x]}}\n",
        "spec.yaml",
        Path("."),
    )
    assert spec_request(loaded.component).is_empty
    assert str(spec_request(loaded.component)) == "nothing"


def test_gpu_memory_is_asked_under_our_own_prefix() -> None:
    got = request("limits: {nvidia.com/gpu: 0.5, orchestrator/gpu-memory: 20Gi}")
    assert got.gpu_memory == 20 * 2**30
    assert str(got) == "0.5 GPU (>= 20Gi each)"


def test_other_keys_are_checked_and_listed_as_ignored() -> None:
    got = request("limits: {ephemeral-storage: 1Gi, hugepages-2Mi: 4Mi, cpu: 1}")
    assert got.ignored == ("ephemeral-storage", "hugepages-2Mi")
    with pytest.raises(SpecError, match=r"limits\.ephemeral-storage: expected a quantity"):
        request("limits: {ephemeral-storage: lots}")


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            "limits: {nvidia.com/gpu: 1.5}",
            "run.container.resources.limits.nvidia.com/gpu: a request above 1 GPU must be"
            " whole cards, got 1.5",
        ),
        (
            "limits: {nvidia.com/gpu: 0.0005}",
            "run.container.resources.limits.nvidia.com/gpu: a GPU share must be a multiple of"
            " 0.001, got 0.0005",
        ),
        (
            "limits: {nvidia.com/gpu: 1}\nrequests: {nvidia.com/gpu: 2}",
            "run.container.resources.requests.nvidia.com/gpu: requests (2) and limits (1)"
            " must be equal",
        ),
        (
            "limits: {cpu: 1}\nrequests: {cpu: 1500m}",
            "run.container.resources.requests.cpu: requests (1.5) must not exceed limits (1)",
        ),
        (
            "limits: {orchestrator/gpu-memory: 8Gi}",
            "run.container.resources: orchestrator/gpu-memory needs nvidia.com/gpu too",
        ),
        (
            "limits: {memory: 4GB}",
            "run.container.resources.limits.memory: expected a quantity such as 2, 500m or 4Gi,"
            " got '4GB'",
        ),
        (
            "requests: {nvidia.com/gpu: '{{ gpus }}'}",
            "run.container.resources.requests.nvidia.com/gpu: expected a quantity such as 2,"
            " 500m or 4Gi, got '{{ gpus }}'",
        ),
    ],
)
def test_bad_requests_are_one_line(resources: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        request(resources)
    assert str(info.value) == message


def test_byte_sizes_are_shown_in_binary_units() -> None:
    assert [format_bytes(n) for n in (100, 2048, 3 * 2**29, 80 * 2**30)] == [
        "100B",
        "2Ki",
        "1.5Gi",
        "80Gi",
    ]
