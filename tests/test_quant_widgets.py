"""inferlab.compress.quant_widgets: panels survive bad combinations and keep a history."""
import plotly.io as pio
import pytest

from inferlab.compress import quant_widgets
from inferlab.compress.quant import Scheme


@pytest.fixture(autouse=True)
def no_browser(monkeypatch):
    """Outside a notebook, fig.show() must not try to open a browser."""
    monkeypatch.setattr(pio.renderers, "default", "json")


def fake_evaluate(scheme, which):
    return {"perplexity": 10 + scheme.bits, "memory_mb": 100 * scheme.bits / 8, "decode_tok_s": 5.0}


def text_of(panel, capsys):
    """What the panel printed: its Output area inside a kernel, stdout here (no kernel)."""
    return "".join(o.get("text", "") for o in panel.children[-1].outputs) + capsys.readouterr().out


def test_three_charts_has_one_bar_chart_per_quantity():
    fig = quant_widgets.three_charts({"fp32": {"perplexity": 11, "memory_mb": 500,
                                               "decode_tok_s": 10},
                                      "int4": {"perplexity": 14, "memory_mb": 150}})
    assert len(fig.data) == 3 and list(fig.data[0].x) == ["fp32", "int4"]


def test_padding_note_only_when_the_group_does_not_divide():
    assert quant_widgets.padding_note(Scheme(4, "absmax", "group", 64)) == ""
    assert "576 padded to 600" in quant_widgets.padding_note(Scheme(4, "absmax", "group", 100))
    assert quant_widgets.padding_note(Scheme(4, "absmax", "channel")) == ""


def test_quantization_panel_measures_and_explains_bad_choices(capsys):
    panel = quant_widgets.quantization_panel(fake_evaluate, {"perplexity": 9, "memory_mb": 400,
                                                             "decode_tok_s": 6})
    assert list(panel.history) == ["fp32", "int4 absmax group-128"]
    panel.controls["method"].value = "nf4"
    panel.controls["bits"].value = 8
    panel.render()
    assert "NF4 is a 4-bit format" in text_of(panel, capsys) and len(panel.history) == 2
    panel.controls["bits"].value = 4
    panel.controls["group_size"].value = 100
    panel.render()
    assert "padded" in text_of(panel, capsys) and "NF4 group-100" in panel.history


def test_layer_panel_redraws_on_change_and_survives_errors(capsys):
    calls = []

    def compute(block, linear, bits, group):
        calls.append((block, linear, bits, group))
        if bits == 2:
            raise ValueError("two bits are not supported here")
        return {"round-to-nearest": 0.1, "GPTQ": 0.05}

    panel = quant_widgets.layer_panel(compute, 30, ["mlp.up_proj", "mlp.down_proj"],
                                      default_block=5)
    assert calls == [(5, "mlp.down_proj", 4, "128")]
    panel.controls["bits"].value = 2
    assert "two bits are not supported" in text_of(panel, capsys)
    panel.controls["group"].value = "per-channel"
    assert calls[-1] == (5, "mlp.down_proj", 2, "per-channel")
