"""inferlab.compress.quant_eval: one measurement row, QAT vs fine-tuning, the corpora."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from inferlab.compress import quant_eval
from inferlab.compress.quant import QuantLinear, Scheme, fake_quantize, quantize_model


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def test_measure_returns_a_consistent_row():
    reference, model = tiny_llama(), tiny_llama()
    quantize_model(model, Scheme(4, "absmax", "group", 32))
    ids = torch.randint(0, 128, (1, 24))
    ref_logits = reference(ids).logits.detach()
    row = quant_eval.measure(model, ids, ref_logits, reference, ids[:, :4], new_tokens=3)
    assert set(row) == {"perplexity", "top1_agreement", "kl", "memory_mb", "linear_mb", "disk_mb",
                        "weight_error", "decode_tok_s"}
    assert row["perplexity"] > 1 and 0 <= row["top1_agreement"] <= 1 and row["kl"] >= 0
    assert row["linear_mb"] < row["memory_mb"] and row["decode_tok_s"] > 0
    same = quant_eval.measure(reference, ids, ref_logits, reference, disk=False)
    assert same["kl"] < 1e-6 and same["top1_agreement"] == 1.0 and same["weight_error"] == 0


def test_linear_bytes_count_quantized_layers():
    model = tiny_llama()
    before = quant_eval.linear_weight_bytes(model)
    assert before == 2 * 4 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 96)  # fp32, 2 blocks
    quantize_model(model, Scheme(8, "absmax", "channel"))
    assert any(isinstance(m, QuantLinear) for m in model.modules())
    assert quant_eval.linear_weight_bytes(model) < before / 3


def test_qat_leaves_weights_on_the_grid_and_trains():
    model = tiny_llama()
    ids = torch.randint(0, 128, (4, 16))
    scheme = Scheme(4, "absmax", "channel")
    losses = quant_eval.finetune(model, ids, steps=3, scheme=scheme, lr=1e-3)
    assert len(losses) == 3 and losses[-1] < losses[0]
    w = model.model.layers[0].mlp.up_proj.weight
    assert type(model.model.layers[0].mlp.up_proj) is torch.nn.Linear  # parametrization removed
    assert torch.allclose(fake_quantize(w.data, scheme), w.data, atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())


def test_plain_finetuning_changes_only_linear_weights():
    model, reference = tiny_llama(), tiny_llama()
    quant_eval.finetune(model, torch.randint(0, 128, (2, 16)), steps=2, lr=1e-3)
    assert torch.equal(model.model.embed_tokens.weight, reference.model.embed_tokens.weight)
    assert not torch.equal(model.model.layers[1].mlp.down_proj.weight,
                           reference.model.layers[1].mlp.down_proj.weight)


def test_corpora_and_arithmetic(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    text = quant_eval.arithmetic_text(3, seed=0)
    lines = text.splitlines()
    assert len(lines) == 3
    assert all(eval(line.split("=")[0]) == int(line.split("=")[1]) for line in lines)
    texts = quant_eval.corpora(tokenizer, 64)
    assert set(texts) == {"prose", "code", "arithmetic"}
    assert all(t.shape == (1, 64) for t in texts.values())
    assert "def " in quant_eval.code_text()
    accuracy = quant_eval.answer_accuracy(model, tokenizer, n_lines=4)
    assert 0.0 <= accuracy <= 1.0
