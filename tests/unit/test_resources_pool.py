"""The resource pool: never over-committed, fractional packing, memory-aware placement,
never-fits reasons, release on failure and cancel, fairness, the run's environment."""

from __future__ import annotations

import random
from collections.abc import Iterable

import anyio
import pytest

from orchestrator.engine.inventory import Gpu, Inventory
from orchestrator.engine.resources import Assignment, NeverFitsError, ResourcePool, never_fits
from orchestrator.spec.resources import ResourceRequest
from tests.fake_gpus import CARDS, GIB

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def four_cards(cpus: int = 16, memory: int = 64 * GIB) -> Inventory:
    """The fake ``nvidia-smi``'s machine: 8, 16, 24 and 80 GiB cards."""
    gpus = tuple(Gpu(i, uuid, name, mib << 20) for i, uuid, name, mib in CARDS)
    return Inventory(gpus, cpus * 1000, memory, "nvidia-smi")


def gpu(share: float, memory_gib: int = 0) -> ResourceRequest:
    return ResourceRequest(gpu_milli=round(share * 1000), gpu_memory=memory_gib * GIB)


def cards(assignment: Assignment) -> list[tuple[int, float]]:
    return [(g.index, g.milli / 1000) for g in assignment.gpus]


def check_books(pool: ResourcePool, held: Iterable[Assignment]) -> None:
    """What the holders hold, added up independently of the pool's counters, fits."""
    per_card: dict[int, int] = {}
    cpu = memory = 0
    for a in held:
        for share in a.gpus:
            per_card[share.index] = per_card.get(share.index, 0) + share.milli
        cpu += a.request.cpu_milli
        memory += a.request.memory
    assert all(0 < milli <= 1000 for milli in per_card.values()), per_card
    assert cpu <= pool.inventory.cpu_milli
    assert memory <= pool.inventory.memory


async def test_many_concurrent_acquires_never_over_commit() -> None:
    pool = ResourcePool(four_cards(cpus=6, memory=10 * GIB))
    rng = random.Random(15)
    shapes = [
        gpu(0.25),
        gpu(0.5),
        gpu(1),
        gpu(2),
        gpu(0.5, 20),
        gpu(1, 40),
        ResourceRequest(cpu_milli=1500, memory=3 * GIB),
        ResourceRequest(),
    ]
    held: dict[int, Assignment] = {}
    most = 0

    async def one(request: ResourceRequest) -> None:
        nonlocal most
        got = await pool.acquire(request, priority=rng.choice((0, 0, 1)))
        held[got.id] = got
        most = max(most, len(held))
        check_books(pool, held.values())
        for _ in range(rng.randint(0, 3)):
            await anyio.lowlevel.checkpoint()
        del held[got.id]
        pool.release(got)

    async with anyio.create_task_group() as tg:
        for _ in range(300):
            tg.start_soon(one, rng.choice(shapes))
    assert most > 4  # runs really did overlap
    assert pool.gpu_free == [1000] * 4
    assert (pool.cpu_free, pool.memory_free, pool.held, pool.waiting) == (6000, 10 * GIB, {}, 0)


async def test_shares_fill_the_fullest_card_that_fits_first() -> None:
    pool = ResourcePool(four_cards())
    a = await pool.acquire(gpu(0.5))
    b = await pool.acquire(gpu(0.25))
    c = await pool.acquire(gpu(0.25))
    assert cards(a) == [(0, 0.5)] and cards(b) == cards(c) == [(0, 0.25)]
    assert pool.gpu_free == [0, 1000, 1000, 1000]
    d = await pool.acquire(gpu(0.75))
    e = await pool.acquire(gpu(0.25))  # fills d's card, not a fresh one
    assert cards(d) == [(1, 0.75)] and cards(e) == [(1, 0.25)]
    pool.release(b)
    assert cards(await pool.acquire(gpu(0.25))) == [(0, 0.25)]


async def test_whole_cards_take_free_cards_smallest_first() -> None:
    pool = ResourcePool(four_cards())
    share = await pool.acquire(gpu(0.5))
    two = await pool.acquire(gpu(2))
    assert cards(share) == [(0, 0.5)]
    assert cards(two) == [(1, 1.0), (2, 1.0)]  # card 0 is partly used: not a whole card
    assert pool.try_acquire(gpu(2)) is None
    assert cards(pool.try_acquire(gpu(1)) or Assignment(0, gpu(0))) == [(3, 1.0)]


async def test_only_cards_with_the_memory_asked_for() -> None:
    pool = ResourcePool(four_cards())
    first = await pool.acquire(gpu(1, memory_gib=20))
    second = await pool.acquire(gpu(0.5, memory_gib=20))
    assert cards(first) == [(2, 1.0)]  # the smallest card with 20Gi
    assert cards(second) == [(3, 0.5)]
    assert pool.try_acquire(gpu(1, memory_gib=20)) is None  # cards 0 and 1 are too small
    assert cards(pool.try_acquire(gpu(1)) or first) == [(0, 1.0)]


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (gpu(3), None),
        (gpu(5), "needs 5 GPUs, this machine has 4"),
        (
            gpu(2, memory_gib=40),
            "needs 2 GPUs with at least 40Gi each, this machine has 1 such of 4",
        ),
        (
            gpu(0.5, memory_gib=100),
            "needs 0.5 GPU with at least 100Gi each, this machine has 0 such of 4",
        ),
        (ResourceRequest(cpu_milli=17000), "needs 17 CPUs, this machine has 16"),
        (ResourceRequest(memory=65 * GIB), "needs 65Gi of memory, this machine has 64Gi"),
    ],
)
async def test_a_request_that_can_never_fit_says_why_at_once(
    request_: ResourceRequest, reason: str | None
) -> None:
    pool = ResourcePool(four_cards())
    assert pool.fits_ever(request_) == reason
    if reason is not None:
        with pytest.raises(NeverFitsError, match=reason):
            await pool.acquire(request_)
        assert pool.waiting == 0


def test_never_fits_on_machines_without_gpus_or_with_unknown_memory() -> None:
    none = Inventory((), 2000, GIB, "none", ("nvidia-smi found no GPU: exit status 9",))
    assert never_fits(gpu(1), none) == (
        "needs 1 GPU, this machine has none (nvidia-smi found no GPU: exit status 9)"
    )
    by_hand = Inventory((Gpu(0), Gpu(1)), 2000, GIB, "--gpus")
    assert never_fits(gpu(3), by_hand) == "needs 3 GPUs, this machine has 2"
    assert never_fits(gpu(1, memory_gib=8), by_hand) == (
        "needs 1 GPU with at least 8Gi each, this machine has 0 such of 2; the memory of"
        " cards given by hand is unknown"
    )


async def test_release_is_idempotent_and_serves_the_next() -> None:
    pool = ResourcePool(four_cards())
    whole = [await pool.acquire(gpu(1)) for _ in range(4)]
    got: list[Assignment] = []

    async def wait() -> None:
        got.append(await pool.acquire(gpu(1)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        pool.release(whole[1])
        pool.release(whole[1])  # a second release gives nothing back twice
    assert cards(got[0]) == [(1, 1.0)]
    assert pool.gpu_free == [0, 0, 0, 0]


async def test_released_when_the_holder_fails() -> None:
    pool = ResourcePool(four_cards())

    async def run_that_fails() -> None:
        got = await pool.acquire(gpu(4))
        try:
            raise RuntimeError("the run failed")
        finally:
            pool.release(got)

    with pytest.raises(RuntimeError):
        await run_that_fails()
    assert pool.gpu_free == [1000] * 4 and pool.held == {}


async def test_a_cancelled_waiter_holds_nothing_and_lets_the_others_go() -> None:
    pool = ResourcePool(four_cards(), max_overtakes=0)  # nobody may overtake a blocked run
    small = await pool.acquire(gpu(0.5))
    order: list[str] = []
    big = anyio.CancelScope()

    async def wait(name: str, request: ResourceRequest) -> None:
        await pool.acquire(request)
        order.append(name)

    async def big_waiter() -> None:
        with big:
            await wait("big", gpu(4))

    async with anyio.create_task_group() as tg:
        tg.start_soon(big_waiter)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(wait, "small", gpu(1))  # fits, but is held back behind the big one
        await anyio.wait_all_tasks_blocked()
        assert order == [] and pool.waiting == 2
        big.cancel()  # the big one gives up: the one it held back starts
    assert order == ["small"]
    assert pool.waiting == 0
    assert pool.gpu_free == [500, 0, 1000, 1000]
    pool.release(small)


async def test_a_waiter_cancelled_as_it_is_served_gives_it_back() -> None:
    pool = ResourcePool(four_cards())
    everything = await pool.acquire(gpu(4))
    scope = anyio.CancelScope()
    reached: list[Assignment] = []

    async def waiter() -> None:
        with scope:
            reached.append(await pool.acquire(gpu(1)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()  # the waiter is cancelled, and before it wakes...
        pool.release(everything)  # ...card 0 is handed to it: it must give it back
        assert pool.waiting == 0 and len(pool.held) == 1
    assert reached == []
    assert pool.gpu_free == [1000] * 4 and pool.held == {}


async def test_a_big_request_is_overtaken_a_bounded_number_of_times() -> None:
    pool = ResourcePool(four_cards(), max_overtakes=3)
    first = [await pool.acquire(gpu(0.5)) for _ in range(2)]  # card 0 full
    started: list[str] = []

    async def run(name: str, request: ResourceRequest) -> None:
        got = await pool.acquire(request)
        started.append(name)
        await done.wait()
        pool.release(got)

    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "big", gpu(4))
        await anyio.wait_all_tasks_blocked()
        for i in range(6):  # a stream of small runs, each of which fits now
            tg.start_soon(run, f"small{i}", gpu(0.5))
            await anyio.wait_all_tasks_blocked()
        tg.start_soon(run, "cpu only", ResourceRequest(cpu_milli=1000))
        await anyio.wait_all_tasks_blocked()
        # Three small runs overtook the big one, then the pool held the rest back; a run
        # that takes nothing the big one needs still went.
        assert started == ["small0", "small1", "small2", "cpu only"]
        for a in first:
            pool.release(a)
        done.set()
    assert started[4] == "big"
    assert sorted(started[5:]) == ["small3", "small4", "small5"]


async def test_higher_priority_first_then_first_come() -> None:
    pool = ResourcePool(four_cards())
    everything = await pool.acquire(gpu(4))
    order: list[str] = []

    async def wait(name: str, priority: int) -> None:
        got = await pool.acquire(gpu(4), priority)
        order.append(name)
        pool.release(got)

    async with anyio.create_task_group() as tg:
        for name, priority in (("a", 0), ("b", 5), ("c", 0), ("d", 5)):
            tg.start_soon(wait, name, priority)
            await anyio.wait_all_tasks_blocked()
        pool.release(everything)
    assert order == ["b", "d", "a", "c"]


async def test_acquire_unless_stopped() -> None:
    pool = ResourcePool(four_cards())
    everything = await pool.acquire(gpu(4))
    stopped = anyio.Event()
    got: list[Assignment | None] = []

    async def wait() -> None:
        got.append(await pool.acquire_unless(gpu(1), stopped))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        stopped.set()
    assert got == [None] and pool.waiting == 0
    assert await pool.acquire_unless(gpu(1), stopped) is None
    pool.release(everything)
    assert cards(await pool.acquire_unless(gpu(1), anyio.Event()) or everything) == [(0, 1.0)]


async def test_the_environment_of_a_run() -> None:
    pool = ResourcePool(four_cards())
    two = await pool.acquire(gpu(2))
    assert two.environment() == {"CUDA_VISIBLE_DEVICES": f"{CARDS[0][1]},{CARDS[1][1]}"}
    half = await pool.acquire(gpu(0.5))
    assert half.environment() == {
        "CUDA_VISIBLE_DEVICES": CARDS[2][1],
        "ORCHESTRATOR_GPU_SHARE": "0.5",
    }
    nothing = await pool.acquire(ResourceRequest(cpu_milli=500))
    assert nothing.environment() == {"CUDA_VISIBLE_DEVICES": ""}  # hidden from it
    assert half.describe() == {"gpus": [{"index": 2, "uuid": CARDS[2][1], "share": 0.5}]}
    assert nothing.describe() == {"gpus": [], "cpu": 0.5}
    assert str(two) == "GPU 0, GPU 1" and str(half) == "GPU 2 (0.5)"
    by_index = ResourcePool(Inventory((Gpu(0), Gpu(3)), 1000, GIB, "--gpus"))
    assert (await by_index.acquire(gpu(1))).environment() == {
        "CUDA_VISIBLE_DEVICES": "0",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    no_gpus = ResourcePool(Inventory((), 1000, GIB, "none"))
    assert (await no_gpus.acquire(ResourceRequest())).environment() == {}
    assert no_gpus.describe()["free"] == {"gpus": [], "cpu": 1.0, "memory": GIB}
