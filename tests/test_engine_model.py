"""The course engine on the embedded SmolLM2-135M (fp32): token-for-token equal to transformers."""
import torch

from inferlab.engine import EngineConfig, LLMEngine, SamplingParams

PROMPTS = ["The capital of France is",
           "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"",
           "Once upon a time, in a small village far away, there lived an old clockmaker who",
           "2 + 2 ="]


def test_greedy_equals_transformers_mixed_lengths_staggered(model_and_tokenizer):
    model, tok = model_and_tokenizer
    params = SamplingParams(max_tokens=8, ignore_eos=True)
    engine = LLMEngine(model, tok, block_size=8, max_model_len=128, max_num_seqs=4)
    arrivals = {0: [0, 1], 1: [2], 3: [3]}
    ids, step = {}, 0
    while step <= max(arrivals) or engine.has_unfinished():
        for i in arrivals.get(step, []):
            ids[i] = engine.add_request(PROMPTS[i], params)
        engine.step()
        step += 1
    outs = {o.request_id: o for o in engine.pop_finished()}
    for i, prompt in enumerate(PROMPTS):
        enc = tok(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            ref = model.generate(enc, max_new_tokens=8, min_new_tokens=8, do_sample=False)
        assert outs[ids[i]].token_ids == ref[0, enc.shape[1]:].tolist(), prompt
    assert max(engine.stats.batch_sizes) >= 3


def test_paged_and_static_logits_identical_on_the_real_model(model_and_tokenizer):
    model, tok = model_and_tokenizer
    rows = {}
    for kind in ("static", "paged"):
        engine = LLMEngine(model, tok, EngineConfig(kv_cache=kind, block_size=4, max_model_len=64,
                                                    max_num_seqs=3))
        for p in PROMPTS[:3]:
            engine.add_request(p, SamplingParams(max_tokens=3, ignore_eos=True))
        logits = []
        real_run = engine.runner.run

        def recording_run(seqs, prefill, real_run=real_run, logits=logits, **kw):
            logits.append(real_run(seqs, prefill, **kw))
            return logits[-1]
        engine.runner.run = recording_run
        while engine.has_unfinished():
            engine.step()
        rows[kind] = torch.cat(logits)
    assert torch.equal(rows["static"], rows["paged"])
