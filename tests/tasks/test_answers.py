"""Reading the final answer: the last \\boxed{} and the tolerated forms of integers and lists."""
import pytest

from qwen3mini.tasks.answers import last_boxed, parse_integer, parse_integer_list


def test_last_boxed_takes_the_last_and_keeps_nested_braces():
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{1}{2}} end") == "\\frac{1}{2}"
    assert last_boxed("no answer here") is None
    assert last_boxed("\\boxed{12} and a cut \\boxed{3") == "12"  # an unclosed last box: the earlier one counts
    assert last_boxed("\\boxed{") is None


@pytest.mark.parametrize("text, value", [
    ("57590", 57590), (" 57590 ", 57590), ("57590.", 57590), ("57,590", 57590), ("1,234,567", 1234567),
    ("-3809", -3809), ("\u22123809", -3809), ("- 3809", -3809), ("$42$", 42), ("+7", 7), ("1\\,000", 1000)])
def test_integer_forms_accepted(text, value):
    assert parse_integer(text) == value


@pytest.mark.parametrize("text", ["5,75,90", "57,59", "12a", "", "1.5", "3 4", "x"])
def test_integer_forms_rejected(text):
    assert parse_integer(text) is None


def test_integer_lists():
    assert parse_integer_list("3, 7, 19, 42, 88") == [3, 7, 19, 42, 88]
    assert parse_integer_list("3,7 ,19  42,88.") == [3, 7, 19, 42, 88]
    assert parse_integer_list("3, seven") is None
    assert parse_integer_list("") is None
