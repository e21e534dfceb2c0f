"""The machine's inventory: GPUs from a fake ``nvidia-smi`` on PATH, lists given by hand,
an inherited CUDA_VISIBLE_DEVICES, failed detections; CPUs and memory with overrides."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from orchestrator.engine import inventory as inv
from orchestrator.engine.inventory import Gpu, machine_inventory, parse_smi
from orchestrator.exceptions import SpecError
from tests.fake_gpus import CARDS, GIB, fake_smi


@pytest.fixture(autouse=True)
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML is not what these tests read, even where ``pynvml`` is installed."""

    def absent() -> tuple[Gpu, ...]:
        raise ImportError("pynvml")

    monkeypatch.setattr(inv, "_nvml", absent)


def test_four_cards_of_different_sizes_from_nvidia_smi(tmp_path: Path) -> None:
    env = fake_smi(tmp_path / "bin")
    got = machine_inventory(environ=env)
    assert got.gpu_source == "nvidia-smi"
    assert [(g.index, g.uuid, g.name) for g in got.gpus] == [(i, u, n) for i, u, n, _ in CARDS]
    assert [g.memory for g in got.gpus] == [8 * GIB, 16 * GIB, 24 * GIB, 80 * GIB]
    assert got.notes == ()
    assert str(got).startswith("4 GPUs (0 (8Gi), 1 (16Gi), 2 (24Gi), 3 (80Gi))")


def test_a_list_given_by_hand_keeps_what_detection_knows(tmp_path: Path) -> None:
    env = fake_smi(tmp_path / "bin")
    got = machine_inventory(gpus="3,1", environ=env)
    assert [(g.index, g.memory) for g in got.gpus] == [(3, 80 * GIB), (1, 16 * GIB)]
    assert got.gpu_source == "--gpus"
    env["ORCHESTRATOR_GPUS"] = "2"
    got = machine_inventory(environ=env)
    assert [g.uuid for g in got.gpus] == [CARDS[2][1]]
    assert got.gpu_source == "ORCHESTRATOR_GPUS"
    assert [g.index for g in machine_inventory(gpus="0", environ=env).gpus] == [0]


def test_a_card_detection_does_not_know_is_refused(tmp_path: Path) -> None:
    env = fake_smi(tmp_path / "bin")
    with pytest.raises(SpecError) as info:
        machine_inventory(gpus="0,7", environ=env)
    assert str(info.value) == "--gpus: no GPU 7 on this machine (it has 0, 1, 2, 3)"


def test_without_detection_a_list_is_taken_on_trust(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}  # no nvidia-smi there
    got = machine_inventory(gpus="0,1,3", environ=env)
    assert got.gpus == (Gpu(0), Gpu(1), Gpu(3))
    assert machine_inventory(environ=env).gpus == ()
    assert machine_inventory(environ=env).gpu_source == "none"


@pytest.mark.parametrize("value", ["none", "None", ""])
def test_none_means_no_gpus_even_where_there_are(tmp_path: Path, value: str) -> None:
    env = fake_smi(tmp_path / "bin", body="raise SystemExit('must not run')")
    env["ORCHESTRATOR_GPUS"] = value
    got = machine_inventory(environ=env)
    assert (got.gpus, got.gpu_source, got.notes) == ((), "none", ())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0,x", "--gpus: expected GPU indexes such as 0,1,3, or none, got '0,x'"),
        ("-1", "--gpus: expected GPU indexes such as 0,1,3, or none, got '-1'"),
        ("1,1", "--gpus: GPU 1 is listed twice in '1,1'"),
    ],
)
def test_a_bad_list_is_one_line(value: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        machine_inventory(gpus=value, environ={"PATH": ""})
    assert str(info.value) == message


def test_an_inherited_cuda_visible_devices_narrows_the_cards(tmp_path: Path) -> None:
    env = fake_smi(tmp_path / "bin")
    env["CUDA_VISIBLE_DEVICES"] = f"2,{CARDS[0][1]}"
    assert [g.index for g in machine_inventory(environ=env).gpus] == [2, 0]
    env["CUDA_VISIBLE_DEVICES"] = ""
    assert machine_inventory(environ=env).gpus == ()
    env["CUDA_VISIBLE_DEVICES"] = "1,9,2"  # CUDA stops at the first entry it cannot find
    assert [g.index for g in machine_inventory(environ=env).gpus] == [1]


@pytest.mark.parametrize(
    ("body", "note"),
    [
        ("raise SystemExit(9)", "nvidia-smi found no GPU: exit status 9"),
        ("print('NVIDIA-SMI has failed because it could not communicate')", "unexpected line"),
        ("import sys; sys.stdout.write('x' * (2 << 20))", "more than 1048576 bytes"),
        ("print('0, GPU-a, A, 10'); print('0, GPU-b, B, 10')", "the same index twice"),
    ],
)
def test_a_failed_detection_gives_no_gpus_and_says_why(
    tmp_path: Path, body: str, note: str
) -> None:
    got = machine_inventory(environ=fake_smi(tmp_path / "bin", body=body))
    assert got.gpus == ()
    assert len(got.notes) == 1
    assert note in got.notes[0]
    assert got.notes[0].startswith("nvidia-smi found no GPU")


def test_a_hung_nvidia_smi_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inv, "SMI_TIMEOUT", 0.5)
    body = "import sys, threading; print('0, GPU-a', flush=True); threading.Event().wait()"
    got = machine_inventory(environ=fake_smi(tmp_path / "bin", body=body))
    assert got.gpus == ()
    assert got.notes == ("nvidia-smi found no GPU: no answer within 0.5s",)


def test_unknown_memory_and_commas_in_names() -> None:
    cards = parse_smi('0, GPU-a, "NVIDIA A10, rev b", [N/A]\n1, GPU-b, Big, 81920\n\n')
    assert cards == (Gpu(0, "GPU-a", "NVIDIA A10, rev b", None), Gpu(1, "GPU-b", "Big", 80 * GIB))


def test_cpus_and_memory_from_the_machine_and_overridden() -> None:
    env = {"PATH": ""}
    got = machine_inventory(environ=env)
    assert got.cpu_milli == len(os.sched_getaffinity(0)) * 1000
    assert got.memory > 0
    got = machine_inventory(cpus="1500m", memory="6Gi", environ=env)
    assert (got.cpu_milli, got.memory) == (1500, 6 * GIB)
    assert got.describe() == {"gpus": [], "gpu_source": "none", "cpu": 1.5, "memory": 6 * GIB}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("cpus", "lots", "--cpus: expected a quantity such as 2, 500m or 4Gi, got 'lots'"),
        ("cpus", "0", "--cpus: expected more than 0 CPUs, got '0'"),
        ("memory", "4GB", "--memory: expected a quantity such as 2, 500m or 4Gi, got '4GB'"),
        ("memory", "0", "--memory: expected more than 0 bytes, got '0'"),
    ],
)
def test_bad_overrides_are_one_line(option: str, value: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        machine_inventory(environ={"PATH": ""}, **{option: value})
    assert str(info.value) == message


class FakeNvml(types.ModuleType):
    """The part of ``pynvml`` the inventory calls: two cards; ``broken`` fails nvmlInit as a
    machine without a driver does."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__("pynvml")
        self.broken = broken
        self.shut = False

    def nvmlInit(self) -> None:  # pynvml names its functions so
        if self.broken:
            raise OSError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, h: int) -> bytes:  # old versions give bytes
        return f"GPU-nvml-{h}".encode()

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(total=(h + 1) * GIB)


def test_nvml_first_when_the_gpu_extra_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # the real NVML reader, given a fake pynvml
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    got = machine_inventory(environ=fake_smi(tmp_path / "bin", body="raise SystemExit(5)"))
    assert got.gpu_source == "nvml"
    assert got.gpus == (
        Gpu(0, "GPU-nvml-0", "NVIDIA H200", GIB),
        Gpu(1, "GPU-nvml-1", "NVIDIA H200", 2 * GIB),
    )
    assert fake.shut


def test_a_failing_nvml_falls_back_to_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(broken=True))
    got = machine_inventory(environ=fake_smi(tmp_path / "bin"))
    assert (got.gpu_source, len(got.gpus), got.notes) == ("nvidia-smi", 4, ())
    got = machine_inventory(environ={"PATH": str(tmp_path / "nowhere")})
    assert got.notes == ("NVML found no GPU (OSError: NVML Shared Library Not Found)",)
