"""A lesson's recap: the headline figures it measured, shown together with their devices."""
import math

import pytest

from inferlab.lab import recap
from inferlab.lab.bench import device_name


@pytest.fixture(autouse=True)
def empty_recap():
    recap.clear()
    yield
    recap.clear()


def test_figures_keep_their_order_and_a_figure_noted_again_replaces_the_first():
    assert recap.note("decode, fp16", 41.0, "tok/s", "GPU X") == 41.0
    recap.note("speed-up", 1.5, "x", "GPU X")
    recap.note("decode, fp16", 44.5, "tok/s", "GPU X")          # the cell run again
    assert [(f.what, f.value) for f in recap.figures()] == [("decode, fp16", 44.5),
                                                            ("speed-up", 1.5)]


def test_the_table_groups_figures_by_the_device_they_ran_on():
    recap.note("bandwidth", 4218.4, "GB/s", "GPU X")
    recap.note("decode", 0.01234, "s", "cpu")
    recap.note("int4 vs fp16", 2.0, "x", "GPU X")
    lines = recap.table().splitlines()
    assert lines[0] == "Measured on GPU X:"
    assert "bandwidth" in lines[1] and "4,218 GB/s" in lines[1]
    assert "int4 vs fp16" in lines[2] and "2.00 x" in lines[2]
    assert lines[3] == f"Measured on {device_name('cpu')}:"
    assert "0.0123 s" in lines[4]


@pytest.mark.parametrize("value,text", [(0, "0"), (3.14159, "3.14"), (56.78, "56.8"),
                                        (1234.5, "1,234"), (0.012345, "0.0123"),
                                        (3.2e9, "3.2e+09"), (-2.5, "-2.50")])
def test_values_read_with_three_significant_figures(value, text):
    assert recap.format_value(value) == text


def test_a_figure_without_a_name_is_refused():
    with pytest.raises(ValueError, match="name"):
        recap.note("", 1.0, "x")
    assert recap.figures() == []


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_finite_is_left_out_and_the_lesson_goes_on(value, capsys):
    recap.note("perplexity", 12.5, "ppl", "GPU X")
    assert recap.note("perplexity", value, "ppl", "GPU X") is value    # the cell run again
    assert recap.figures() == []                # the earlier reading is not shown as this one
    assert "'perplexity' left out" in capsys.readouterr().out


def test_outside_a_notebook_the_recap_is_printed(capsys):
    recap.show()
    assert "run the lesson's cells" in capsys.readouterr().out
    recap.note("decode", 12.0, "tok/s", "GPU X")
    recap.show()
    assert "Measured on GPU X:" in capsys.readouterr().out
