import time

import pytest

from orchestrator.exceptions import SpecError
from orchestrator.spec.yamlsafe import MAX_DEPTH, MAX_FILE_BYTES, load_yaml


def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghijk"[: levels - 1]:
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


def test_alias_bomb_fails_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(SpecError, match="alias bomb"):
        load_yaml(billion_laughs(), "bomb.yaml")
    assert time.perf_counter() - started < 0.5


def test_small_aliases_are_fine() -> None:
    data = load_yaml("base: &b {lr: 0.1}\nother: *b\n")
    assert data == {"base": {"lr": 0.1}, "other": {"lr": 0.1}}


def test_recursive_alias_is_rejected() -> None:
    with pytest.raises(SpecError, match="recursive"):
        load_yaml("&a [*a]", "x.yaml")


def test_deep_nesting_is_rejected() -> None:
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    with pytest.raises(SpecError, match="nesting"):
        load_yaml(deep, "x.yaml")


def test_oversized_file_is_rejected() -> None:
    with pytest.raises(SpecError, match="limit"):
        load_yaml("a: " + "x" * (MAX_FILE_BYTES + 1), "big.yaml")


def test_malformed_yaml_names_line_and_column() -> None:
    with pytest.raises(SpecError) as info:
        load_yaml("a: [1, 2\nb: 3\n", "bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: invalid YAML: line ")
    assert "\n" not in message


def test_python_tags_are_refused() -> None:
    with pytest.raises(SpecError, match="invalid YAML"):
        load_yaml("a: !!python/object/apply:os.system ['true']\n", "evil.yaml")


def test_empty_document_is_none() -> None:
    assert load_yaml("") is None


def test_undecodable_bytes_give_one_line() -> None:
    with pytest.raises(SpecError) as info:
        load_yaml(b"version: 1.1\n\xff\xfe garbage\n", "bin.yaml")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("bin.yaml: invalid YAML:")
