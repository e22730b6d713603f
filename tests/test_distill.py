"""inferlab.compress.distill: students built from the teacher's layers, the loss, training,
saving."""
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from inferlab.compress import distill

SHAPE = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4)


def test_spread_layers_keeps_first_and_last():
    assert distill.spread_layers(30, 10) == [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
    assert distill.spread_layers(4, 2) == [0, 3]
    assert distill.spread_layers(5, 5) == [0, 1, 2, 3, 4]
    assert distill.spread_layers(7, 1) == [0]
    for bad in (0, 8):
        with pytest.raises(ValueError):
            distill.spread_layers(7, bad)


def test_make_student_copies_the_chosen_layers_and_leaves_the_teacher_alone(tiny_llama):
    teacher = tiny_llama(**SHAPE)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = distill.make_student(teacher, [0, 3])
    assert len(student.model.layers) == 2 and student.config.num_hidden_layers == 2
    assert len(teacher.model.layers) == 4 and teacher.config.num_hidden_layers == 4
    assert torch.equal(student.model.layers[1].mlp.up_proj.weight,
                       teacher.model.layers[3].mlp.up_proj.weight)
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]
    assert student.lm_head.weight.data_ptr() == student.get_input_embeddings().weight.data_ptr()
    with torch.no_grad():  # the copy is independent
        for p in student.parameters():
            p.add_(1.0)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert distill.make_student(teacher, 3).student_of["teacher_layers"] == [0, 2, 3]
    ids = torch.randint(0, 96, (1, 6))
    out = student.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)  # KV cache works
    assert out.shape == (1, 11)
    with pytest.raises(ValueError):
        distill.make_student(teacher, [0, 9])


def test_a_student_with_all_layers_is_the_teacher(tiny_llama):
    teacher = tiny_llama(**SHAPE)
    student = distill.make_student(teacher, 4)
    ids = torch.randint(0, 96, (2, 7))
    with torch.no_grad():
        assert torch.allclose(student(ids).logits, teacher(ids).logits)


def test_distillation_loss_parts():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    ids = torch.randint(0, 11, (2, 5))
    T = 3.0
    kl = (F.softmax(t / T, -1)
          * (F.log_softmax(t / T, -1) - F.log_softmax(s / T, -1))).sum(-1).mean()
    ce = F.cross_entropy(s[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1))
    assert (distill.distillation_loss(s, t, ids, T, alpha=1.0).item()
            == pytest.approx(T * T * kl.item(), rel=1e-5))
    assert (distill.distillation_loss(s, t, ids, T, alpha=0.0).item()
            == pytest.approx(ce.item(), rel=1e-5))
    mixed = distill.distillation_loss(s, t, ids, T, alpha=0.3).item()
    assert mixed == pytest.approx(0.3 * T * T * kl.item() + 0.7 * ce.item(), rel=1e-5)
    assert distill.distillation_loss(t, t, ids, T, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_distill_lowers_the_loss_and_keeps_the_embedding_frozen(tiny_llama):
    teacher = tiny_llama(**SHAPE)
    student = distill.make_student(teacher, 1)
    embedding = student.get_input_embeddings().weight.clone()
    windows = torch.randint(0, 96, (8, 12))
    history = distill.distill(student, teacher, windows, steps=20, batch_size=4, lr=3e-3,
                              progress=False, bf16=False)
    assert len(history) == 20 and all(math.isfinite(h) for h in history)
    assert sum(history[-5:]) < sum(history[:5])
    assert torch.equal(student.get_input_embeddings().weight, embedding)
    assert not student.training and student.get_input_embeddings().weight.requires_grad


def test_distill_in_bf16_and_with_a_custom_loss(tiny_llama):
    teacher = tiny_llama(**SHAPE)
    student = distill.make_student(teacher, 2)
    calls = []

    def loss_fn(s, t, ids, temperature, alpha):
        calls.append((temperature, alpha))
        return distill.distillation_loss(s, t, ids, temperature, alpha)
    history = distill.distill(student, teacher, torch.randint(0, 96, (4, 8)), steps=3, batch_size=2,
                              temperature=4.0, alpha=0.9, loss_fn=loss_fn, progress=False)
    assert len(history) == 3 and calls == [(4.0, 1.0), (4.0, 0.0)] * 3  # soft part, hard part
    assert next(teacher.parameters()).dtype == torch.float32  # the caller's teacher is not cast


def test_distill_step_is_clipped_adam_on_the_mixed_loss():
    from inferlab.compress.toy_lm import toy_lm, toy_params, toy_teacher
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (3, 6))
    params, ref = toy_params(seed=2), toy_params(seed=2)
    optimizer = torch.optim.Adam(list(ref.values()), lr=0.05)
    state = {}
    for max_norm in (0.5, 100.0, 0.1):
        report = distill.distill_step(toy_lm, params, toy_teacher, ids, state, lr=0.05,
                                      temperature=3.0, alpha=0.7, max_grad_norm=max_norm)
        with torch.no_grad():
            t = toy_teacher(ids)
        s = toy_lm(ref, ids)
        soft = distill.distillation_loss(s, t, ids, 3.0, 1.0)
        hard = distill.distillation_loss(s, t, ids, 3.0, 0.0)
        loss = 0.7 * soft + 0.3 * hard
        optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(ref.values()), max_norm)
        optimizer.step()
        assert report["loss"] == pytest.approx(loss.item(), rel=1e-5)
        assert report["soft"] == pytest.approx(soft.item(), rel=1e-5)
        assert report["hard"] == pytest.approx(hard.item(), rel=1e-5)
        assert report["grad_norm"] == pytest.approx(norm.item(), rel=1e-5)
        for name in ref:
            torch.testing.assert_close(params[name], ref[name])
    assert state["step"] == 3
    with pytest.raises(RuntimeError, match="no_grad"):
        toy_teacher(ids)


def test_distill_runs_a_custom_step_and_reports_its_parts(tiny_llama):
    teacher = tiny_llama(**SHAPE)
    student = distill.make_student(teacher, 2)
    seen = []

    def step_fn(student_fn, params, teacher_fn, ids, state, **kwargs):
        seen.append((sorted(kwargs), len(params), ids.shape))
        return distill.distill_step(student_fn, params, teacher_fn, ids, state, **kwargs)
    parts = []
    history = distill.distill(student, teacher, torch.randint(0, 96, (4, 8)), steps=2,
                              batch_size=2, step_fn=step_fn, parts=parts, progress=False)
    assert len(history) == 2 and [p["loss"] for p in parts] == history
    assert seen[0][0] == ["alpha", "lr", "max_grad_norm", "temperature"]
    assert seen[0][1] == sum(1 for p in student.parameters()) - 1  # the embedding is frozen
    assert set(parts[0]) == {"loss", "soft", "hard", "grad_norm"}


def test_batches_cycle_through_every_window():
    windows = torch.arange(10).view(5, 2)
    seen = torch.cat(list(distill.batches(windows, 2, 5)))  # 10 rows = two epochs
    assert seen.shape == (10, 2)
    assert sorted(seen[:, 0].tolist()) == sorted(list(range(0, 10, 2)) * 2)


def test_save_student_loads_back_with_load_model(tmp_path, monkeypatch, embedded_model_dir,
                                                 tiny_llama):
    from transformers import AutoTokenizer

    from inferlab.lab.models import load_model
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path))
    teacher = tiny_llama(**SHAPE)
    student = distill.make_student(teacher, [0, 2])
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    folder = distill.save_student(student, tokenizer, "tiny", info={"steps": 3})
    assert folder == tmp_path / "students" / "tiny"
    assert distill.saved_students() == {"tiny": {"teacher_layers": [0, 2], "teacher_n_layers": 4,
                                                 "steps": 3}}
    loaded, _ = load_model(str(folder))
    ids = torch.randint(0, 96, (1, 6))
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, student(ids).logits, atol=1e-6)
    assert not list((tmp_path / "students").glob(".*partial*"))
    with pytest.raises(ValueError):
        distill.save_student(student, tokenizer, "../escape")


def test_find_student_prefers_the_full_run(tmp_path, monkeypatch, embedded_model_dir, tiny_llama):
    from transformers import AutoTokenizer
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="04_distillation"):
        distill.find_student("s")
    student = distill.make_student(tiny_llama(**SHAPE), 1)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    fast = distill.save_student(student, tokenizer, "s" + distill.FAST_SUFFIX)
    assert distill.find_student("s") == fast
    full = distill.save_student(student, tokenizer, "s")
    assert distill.find_student("s") == full


def test_teacher_windows_are_generated_tokens(embedded_model_dir):
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=128, tie_word_embeddings=True)
    teacher = LlamaForCausalLM(config).eval()
    side = tokenizer.padding_side
    windows = distill.teacher_windows(teacher, tokenizer, n_samples=3, seq_len=8, batch_size=2,
                                      progress=False)
    assert windows.shape == (3, 8) and windows.dtype == torch.long
    assert tokenizer.padding_side == side  # restored
