"""What ``ls``/``show`` make of a daemon's answer: data, or one line (never a TypeError)."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.exceptions import NotFoundError, UnavailableError
from orchestrator.views import _answer


def test_a_200_is_its_json() -> None:
    assert _answer(httpx.Response(200, json=[{"id": "s1"}])) == [{"id": "s1"}]


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (httpx.Response(404, json={"error": "no sweep matches 'x'"}), NotFoundError, "no sweep"),
        (httpx.Response(503, json={"error": "too many connections"}), UnavailableError, "too many"),
        (httpx.Response(502, text="Bad Gateway"), UnavailableError, "the daemon answered 502"),
    ],
)
def test_other_answers_are_one_line_errors(
    response: httpx.Response, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _answer(response)
