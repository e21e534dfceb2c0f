import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.spec.types import CoercionError, coerce, parse_type

AS_JSON = ": a number given as text is read as JSON, as Polyaxon does"


def c(value: Any, tp: str) -> Any:
    return coerce(value, parse_type(tp))


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [
        ("5", "int", 5),
        (5.0, "int", 5),
        (True, "int", 1),
        ("1", "int", 1),
        ("5.0", "int", 5),
        ("yes", "bool", True),
        ("true", "bool", True),
        ("off", "bool", False),
        (1, "bool", True),
        (0, "bool", False),
        (True, "str", "true"),
        (5, "str", "5"),
        (1.5, "str", "1.5"),
        ([1, 2], "str", "[1,2]"),
        ("10", "str", "10"),
        ("'quoted'", "str", "'quoted'"),
        (3, "float", 3.0),
        ("1e-3", "float", 0.001),
        ([1, "2.0"], "List[float]", [1.0, 2.0]),
        ('{"a": 1}', "dict", {"a": 1}),
        ({"a": "1"}, "Dict[str, int]", {"a": 1}),
        (None, "Optional[int]", None),
        ("7", "Optional[int]", 7),
        ("2019-06-22", "date", dt.date(2019, 6, 22)),
        ("2020-01-01T10:00:00", "datetime", dt.datetime(2020, 1, 1, 10)),
        (90, "timedelta", dt.timedelta(seconds=90)),
        ("01:30:00", "timedelta", dt.timedelta(hours=1, minutes=30)),
        ("anything", "path", "anything"),
        (0.5, "metric", 0.5),
        ({"k": 1}, "metadata", {"k": 1}),
        ([1, "a"], "list", [1, "a"]),
        ({"url": "https://x"}, "git", {"url": "https://x"}),
        ("whatever", "any", "whatever"),
        ("a@b.co", "email", "a@b.co"),
        (" 3 ", "int", 3),
        ("1e3", "int", 1000),
        ("true", "int", 1),
        (" 2.5 ", "float", 2.5),
    ],
)
def test_coercion_matches_polyaxon(value: Any, tp: str, expected: Any) -> None:
    result = c(value, tp)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "tp", "message"),
    [
        (5.5, "int", "expected int, got 5.5"),
        ("5.5", "int", "expected int, got 5.5"),
        ("abc", "int", 'expected int, got "abc"'),
        ("maybe", "bool", 'expected bool, got "maybe"'),
        (2, "bool", "expected bool, got 2"),
        ("x", "float", 'expected float, got "x"'),
        ([1, "x"], "List[int]", 'item 1: expected int, got "x"'),
        ("not json", "dict", 'expected dict, got "not json"'),
        (None, "int", "expected int, got None"),
        ("2019-13-01", "date", 'expected date, got "2019-13-01"'),
        ("nope", "uuid", 'expected uuid, got "nope"'),
        ("nope", "email", 'expected email, got "nope"'),
        # A number given as text is read as JSON, as Polyaxon reads it (-P values included).
        ("010", "int", f'expected int, got "010"{AS_JSON}'),
        ("+1", "int", f'expected int, got "+1"{AS_JSON}'),
        ("1_000", "int", f'expected int, got "1_000"{AS_JSON}'),
        (".5", "float", f'expected float, got ".5"{AS_JSON}'),
        ("1.", "float", f'expected float, got "1."{AS_JSON}'),
        ("nan", "float", f'expected float, got "nan"{AS_JSON}'),
        ("Infinity", "float", f'expected float, got "Infinity"{AS_JSON}'),
        ("07", "Optional[int]", f'expected int, got "07"{AS_JSON}'),
    ],
)
def test_coercion_errors_say_what_was_expected(value: Any, tp: str, message: str) -> None:
    with pytest.raises(CoercionError) as info:
        c(value, tp)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("expr", "canonical", "value", "expected"),
    [
        ("int", "int", "3", 3),
        ("float", "float", "2.5", 2.5),
        ("bool", "bool", "no", False),
        ("str", "str", 5, "5"),
        ("List[float]", "List[float]", ["1.5", 2], [1.5, 2.0]),
        ("Dict[str, int]", "Dict[str, int]", {"a": "2"}, {"a": 2}),
        ("Optional[int]", "Optional[int]", None, None),
        ("Optional[int]", "Optional[int]", "7", 7),
        ("list[str]", "List[str]", [1, "b"], ["1", "b"]),
        ("typing.List[int]", "List[int]", ["2"], [2]),
        ("Union[int, None]", "Optional[int]", None, None),
        ("Union[int, None]", "Optional[int]", "7", 7),
        ("path", "str", 5, "5"),
        ("uri", "str", 5, "5"),
        ("image", "str", 5, "5"),
    ],
)
def test_type_expressions_parse(expr: str, canonical: str, value: Any, expected: Any) -> None:
    parsed = parse_type(expr)
    assert str(parsed) == canonical
    assert parsed == parse_type(canonical)
    result = coerce(value, parsed)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("expr", ["Literal['a']", "integer", "List[int", "Dict[str]", "int]"])
def test_bad_type_expressions_fail(expr: str) -> None:
    with pytest.raises(ValueError):
        parse_type(expr)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_int_round_trips_through_text_and_float(n: int) -> None:
    assert c(str(n), "int") == n
    assert c(float(n), "int") == n
    assert c(n, "int") == n


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_round_trips_through_repr(x: float) -> None:
    assert c(repr(x), "float") == x


@given(st.booleans())
def test_bool_round_trips_through_words(b: bool) -> None:
    assert c(str(b).lower(), "bool") is b
    assert c("yes" if b else "no", "bool") is b
    assert c(int(b), "bool") is b


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000)))
def test_list_of_float_coerces_every_item(items: list[float]) -> None:
    result = c(items, "List[float]")
    assert result == [float(v) for v in items]
    assert all(type(v) is float for v in result)


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()))
def test_int_rejects_fractions(x: float) -> None:
    with pytest.raises(CoercionError):
        c(x, "int")


def test_yaml_nan_and_infinity_stay_floats_as_polyaxon_keeps_them() -> None:
    assert math.isnan(c(float("nan"), "float"))
    assert c(float("-inf"), "float") == float("-inf")
