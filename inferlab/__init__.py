"""inference lab (inferlab): the helper package of the course on LLM inference optimization.

Organised by role, one concept per module; each module's docstring names the lesson that
introduces it. Notebooks import names explicitly, e.g.
``from inferlab.lab.models import load_model``; importing the package has no side effects
(no model loads, no thread changes).

=======================  =======  ==========================================================
module                   lessons  what it holds
=======================  =======  ==========================================================
**lab/** (plumbing every lesson uses)
``lab.settings``         all      fast mode, grading mode, cache folder, CPU threads
``lab.course``           00       the repository address the setup cell installs from
``lab.models``           all      the embedded SmolLM2-135M (offline) or a hub model
``lab.data``             00-04    offline evaluation and calibration text, with provenance
``lab.bench``            all      correct timing, tokens/s, bandwidth, the roofline
``lab.generation``       00, 01   prefill and decode taken apart and timed
``lab.quality``          01-04    perplexity, top-1 agreement, KL to a reference
``lab.records``          all      GPU measurements recorded elsewhere, with card and date
``lab.plots``            all      the plotly figures the lessons share
``lab.widgets``          all      ipywidgets panels that re-run a comparison
``lab.submit``           all      hand a lesson to the course service, see its grade
``lab.scripted_device``  13       a pretend GPU with a scripted clock, to test a harness
**compress/** (making the model smaller)
``compress.quant``       01, 02   absmax / zero-point / NF4 quantization, packing, QuantLinear
``compress.quant_eval``  01, 02   a quantized model measured: quality, size, speed; PTQ vs QAT
``compress.quant_widgets`` 01, 02 the quantization panels
``compress.int4_tinygemm`` 01    PyTorch's int4 kernel (tinygemm) fed the W4A16 format
``compress.gptq``        02       GPTQ: error feedback through the inverse Hessian
``compress.awq``         02       AWQ: activation-aware scaling before rounding
``compress.gguf_blocks`` 02       GGUF's Q8_0 / Q4_0 blocks and the file around them
``compress.prune``       03       unstructured, structured and 2:4 pruning
``compress.distill``     04       knowledge distillation into a smaller student
**engine/** (the course's inference engine, 05-09; see ``inferlab.engine``)
**serving/** (servers, clients, load, monitoring, parallelism, 10-11; see ``inferlab.serving``)
=======================  =======  ==========================================================
"""
__version__ = "0.1.0"
