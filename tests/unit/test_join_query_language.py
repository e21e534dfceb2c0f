"""Polyaxon's query language for joins: what each field accepts (as Polyaxon's run query
manager parses it), sorts, and one-line errors that name the join."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec import models as m
from orchestrator.spec.joins import (
    Condition,
    JoinSource,
    check_join,
    join_source,
    parse_query,
    parse_sort,
)

WHERE = "run.operations[evaluate].joins[0].query"


def _day(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("metrics.loss:<0.1", [Condition("metrics.loss", "<", 0.1)]),
        # Polyaxon turns a negated comparison around.
        ("metrics.loss: ~<0.1", [Condition("metrics.loss", ">=", 0.1)]),
        ("metrics.loss:=<3", [Condition("metrics.loss", "<=", 3)]),
        ("metrics.loss:~0.5", [Condition("metrics.loss", "=", 0.5, True)]),
        ("metrics.loss:~nil", [Condition("metrics.loss", "nil", None, True)]),
        ("status:succeeded|stopped", [Condition("status", "|", ["succeeded", "stopped"])]),
        ("state:~failed", [Condition("status", "=", "failed", True)]),
        ("name:~train", [Condition("name", "=", "train", True)]),
        ("name:%train%", [Condition("name", "%%", "train")]),
        ("name:train%", [Condition("name", "_%", "train")]),
        ("name:%train", [Condition("name", "%_", "train")]),
        ("id:abc", [Condition("uuid", "=", "abc")]),
        ("params.lr:0.1", [Condition("inputs.lr", "=", 0.1)]),
        ("in.optimizer:adam|sgd", [Condition("inputs.optimizer", "|", ["adam", "sgd"])]),
        ("inputs.flag:true", [Condition("inputs.flag", "=", True)]),
        ("out.score:>=2", [Condition("outputs.score", ">=", 2)]),
        ("tags:a|b", [Condition("tags", "|", ["a", "b"])]),
        ("hub.name:train", [Condition("hub.name", "=", "train")]),
        ("duration:<60", [Condition("duration", "<", 60)]),
        ("kind:job", [Condition("kind", "=", "job")]),
        ("created_at:_any_", []),
        (
            "created_at:2018-10-01 .. 2019-10-01",
            [Condition("created_at", "..", (_day("2018-10-01"), _day("2019-10-01")))],
        ),
        (
            "created_at:2018-10-01",
            [Condition("created_at", "=", (_day("2018-10-01"), _day("2018-10-02")))],
        ),
        (
            "started_at:~2018-10-01 10:10",
            [
                Condition(
                    "started_at",
                    "=",
                    (_day("2018-10-01T10:10"), _day("2018-10-01T10:11")),
                    True,
                )
            ],
        ),
        ("finished_at:>2018-10-01", [Condition("finished_at", ">", _day("2018-10-01"))]),
    ],
)
def test_each_field_parses_as_polyaxon_parses_it(query: str, expected: list[Condition]) -> None:
    assert parse_query(query, WHERE) == expected


def test_conditions_join_with_commas_and_the_and_keyword() -> None:
    conditions = parse_query("metrics.loss:<0.1, status:succeeded and name:~train", WHERE)
    assert [c.field for c in conditions] == ["metrics.loss", "status", "name"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", "expected a query"),
        ("loss", "expected FIELD:CONDITION"),
        ("metrics.loss:", "expected FIELD:CONDITION"),
        ("metrics.loss:low", "expected a number"),
        ("metrics.loss:1|2", "'|' is not allowed in a scalar condition"),
        ("metrics.loss:1..2", "'..' is not allowed in a scalar condition"),
        ("status:<1", "'<' is not allowed for status"),
        ("name:<x", "'<' is not allowed in a search condition"),
        ("status:a|", "'|' is not allowed in a value condition"),
        ("created_at:a|b", "'|' is not allowed in a date condition"),
        ("created_at:yesterday", "expected a date"),
        ("created_at:2018-10-01 ..", "expected a range"),
        ("foo:1", "unknown field 'foo'"),
        ("user:me", "'user' is a Polyaxon field that local runs do not have"),
        ("hub.kind:x", "expected hub.name"),
        ("metrics.a.b:1", "expected a field name"),
        ("status:a OR status:b", "OR and parentheses are not supported locally"),
        ("(status:a, name:b)", "OR and parentheses are not supported locally"),
        ("status:a | name:b", "OR and parentheses are not supported locally"),
    ],
)
def test_a_bad_query_is_one_line_naming_the_join(query: str, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_query(query, WHERE)
    message = str(caught.value)
    assert message.startswith(f"{WHERE}: ")
    assert says in message
    assert "\n" not in message


def test_sort_keys_in_order_with_descending_marks() -> None:
    assert parse_sort("-metrics.accuracy, created_at", WHERE) == [
        ("metrics.accuracy", True),
        ("created_at", False),
    ]
    assert parse_sort("params.lr, -out.score, -uuid", WHERE) == [
        ("inputs.lr", False),
        ("outputs.score", True),
        ("uuid", True),
    ]
    assert parse_sort(None, WHERE) == []
    assert parse_sort("", WHERE) == []


@pytest.mark.parametrize("sort", ["-foo", "tags", "hub.name", "metrics", "-"])
def test_a_bad_sort_is_one_line_naming_the_join(sort: str) -> None:
    where = "run.operations[evaluate].joins[0].sort"
    with pytest.raises(SpecError) as caught:
        parse_sort(sort, where)
    assert str(caught.value).startswith(f"{where}: ")


@pytest.mark.parametrize(
    ("value", "section", "key"),
    [
        ("inputs.lr", "inputs", "lr"),
        ("outputs.loss", "outputs", "loss"),
        ("{{ globals.uuid }}", "globals", "uuid"),
        ("inputs", "inputs", None),
        ("io", "io", None),
        ("artifacts", "artifacts", None),
        ("artifacts.base", "artifacts", "base"),
        ("artifacts.tensorboard.logs", "artifacts", "tensorboard/logs"),
    ],
)
def test_join_param_values_as_polyaxon_reads_them(
    value: str, section: str, key: str | None
) -> None:
    assert join_source(value, "v") == JoinSource(section, key)


def test_an_artifacts_value_names_paths_in_each_run() -> None:
    source = join_source({"files": ["a/b.txt"], "dirs": ["c"]}, "v")
    assert source == JoinSource("artifacts", None, {"files": ["a/b.txt"], "dirs": ["c"]})


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("metrics.loss", "expected outputs.NAME"),  # Polyaxon 2.18 refuses it too
        ("foo", "expected inputs, outputs, io, artifacts"),
        ("inputs.a.b", "expected inputs, outputs, io, artifacts"),
        ("globals.nope", "globals.nope is not known locally"),
        ({"urls": ["x"]}, "expected an artifacts value"),
        (3, "expected inputs.NAME"),
    ],
)
def test_a_bad_join_param_value_is_one_line(value: object, says: str) -> None:
    with pytest.raises(
        SpecError, match=f"^run.operations\\[e\\].joins\\[0\\].params.x.value: {says}"
    ):
        join_source(value, "run.operations[e].joins[0].params.x.value")


def test_check_join_checks_everything_but_templates() -> None:
    where = "run.operations[e].joins[0]"
    good = m.Join(
        query="status:succeeded",
        sort="-metrics.loss",
        limit=2,
        params={"x": m.Param(value="inputs.lr")},
    )
    check_join(good, where)
    check_join(
        m.Join(query="metrics.loss:<{{ level }}", sort="{{ order }}"), where
    )  # once rendered
    for bad, field in (
        (m.Join(query="loss"), "query"),
        (m.Join(query="status:a", sort="-nope"), "sort"),
        (m.Join(query="status:a", limit=-1), "limit"),
        (m.Join(query="status:a", params={"x": m.Param(value="metrics.loss")}), "params.x.value"),
    ):
        with pytest.raises(SpecError, match=f"^{re.escape(where)}.{re.escape(field)}: "):
            check_join(bad, where)
