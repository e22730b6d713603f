"""GGUF block quantization (Q8_0, Q4_0) from scratch, and the GGUF file around it.

Introduced in lesson 02. GGUF is llama.cpp's file format: a header of key/value metadata
(architecture, sizes, tokenizer, chat template) followed by tensors, each in its own type. The
simplest quantized types cut a row into **blocks of 32 weights**, each stored with one fp16 scale:

* **Q8_0** (34 bytes / 32 weights = 8.5 bits): ``d = max|x| / 127``, ``q = round(x / d)`` as int8,
  rounding halves *away from zero* (C's ``roundf``); the block is ``fp16(d)`` then the 32 int8s.
* **Q4_0** (18 bytes / 32 weights = 4.5 bits): ``d = x_m / -8`` where ``x_m`` is the value of
  largest magnitude *with its sign*, ``q = trunc(x / d + 8.5)`` clipped to 0..15; the block is
  ``fp16(d)`` then 16 bytes: byte ``j`` holds ``q[j]`` in its low nibble and ``q[j + 16]`` in its
  high nibble (not neighbours, unlike ``inferlab.compress.quant.pack_int4``). Dequantized:
  ``(q - 8) * d``. Putting the extreme value at exactly ``-8 d`` uses the one extra level of the
  asymmetric range [-8, 7].
* **Q4_1** (20 bytes / 32: fp16 ``d`` and fp16 ``m``): ``x = q * d + m`` - the type of the course's
  embedded model file.

Bit-exact means every byte equals the ``gguf`` package's reference (itself checked against
llama.cpp's C code): the same float32 operations in the same order, the same rounding.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

BLOCK = 32


def _blocks(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).to(torch.float32)
    if x.numel() % BLOCK:
        raise ValueError(f"the number of values ({x.numel()}) must be a multiple of {BLOCK}")
    return x.reshape(-1, BLOCK)


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """C's ``roundf``: halves go away from zero (torch.round sends them to the even neighbour).

    Computed as ``floor(a) + floor(2 * (a - floor(a)))`` on ``a = |v|``: every step is exact in
    float32, while the tempting ``floor(a + 0.5)`` can round ``a + 0.5`` up before the floor.
    """
    a = v.abs()
    floored = torch.floor(a)
    return torch.sign(v) * (floored + torch.floor(2 * (a - floored)))


def _fp16_bytes(d: torch.Tensor) -> torch.Tensor:
    return d.to(torch.float16).view(torch.uint8).reshape(-1, 2)  # little-endian, as on x86/ARM


def q8_0_quantize(x: torch.Tensor) -> torch.Tensor:
    """Q8_0 blocks of ``x`` (float32, length a multiple of 32): uint8 tensor ``(n_blocks, 34)``."""
    blocks = _blocks(x)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = round_half_away(blocks * inv).to(torch.int8)
    return torch.cat([_fp16_bytes(d), q.view(torch.uint8)], dim=1)


def q8_0_dequantize(data: torch.Tensor) -> torch.Tensor:
    data = torch.as_tensor(data).reshape(-1, 34)
    d = data[:, :2].contiguous().view(torch.float16).float()
    return (data[:, 2:].contiguous().view(torch.int8).float() * d).flatten()


def q4_0_quantize(x: torch.Tensor) -> torch.Tensor:
    """Q4_0 blocks of ``x`` (float32, length a multiple of 32): uint8 tensor ``(n_blocks, 18)``."""
    blocks = _blocks(x)
    index = blocks.abs().argmax(dim=1, keepdim=True)      # first occurrence on ties, like numpy
    d = torch.gather(blocks, 1, index) / -8
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc(blocks * inv + 8.5).clamp(0, 15).to(torch.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    return torch.cat([_fp16_bytes(d), packed], dim=1)


def q4_0_dequantize(data: torch.Tensor) -> torch.Tensor:
    data = torch.as_tensor(data).reshape(-1, 18)
    d = data[:, :2].contiguous().view(torch.float16).float()
    qs = data[:, 2:]
    q = torch.cat([qs & 0x0F, qs >> 4], dim=1).float() - 8
    return (q * d).flatten()


# ------------------------------------------------------------------------------ the file
def gguf_summary(path: str | Path) -> dict:
    """Metadata (scalars and short arrays) and a per-type tensor count of a GGUF file."""
    from gguf import GGUFReader, GGUFValueType
    reader = GGUFReader(path)
    metadata = {}
    for name, field in reader.fields.items():
        if field.types and field.types[0] == GGUFValueType.ARRAY:
            metadata[name] = f"array of {len(field.data)} {field.types[-1].name.lower()}"
        else:
            metadata[name] = field.contents()
    types: dict[str, dict] = {}
    for tensor in reader.tensors:
        row = types.setdefault(tensor.tensor_type.name, {"tensors": 0, "weights": 0, "bytes": 0})
        row["tensors"] += 1
        row["weights"] += int(tensor.n_elements)
        row["bytes"] += int(tensor.n_bytes)
    for row in types.values():
        row["bits_per_weight"] = 8 * row["bytes"] / row["weights"]
    return {"metadata": metadata, "types": types, "reader": reader}


def write_requantized(src: str | Path, dst: str | Path, quantize=q8_0_quantize,
                      qtype_name: str = "Q8_0", file_type: int = 7) -> Path:
    """Copy a GGUF file, re-quantizing its Q4_0/Q4_1 tensors with ``quantize`` (Q8_0 by default).

    Metadata is copied as is (``general.file_type`` updated: 7 = mostly Q8_0); F32 tensors and
    tensors already in the target type are copied byte for byte.
    """
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize
    target = GGMLQuantizationType[qtype_name]
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(dst, arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # written by the writer itself
        if name == "general.file_type":
            writer.add_file_type(file_type)
            continue
        sub = field.types[-1] if field.types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), field.types[0], sub_type=sub)
    for tensor in reader.tensors:
        kind = tensor.tensor_type
        if kind in (GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1):
            values = dequantize(tensor.data, kind)                     # (rows, cols) float32
            rows = values.shape[0]
            data = quantize(torch.from_numpy(np.ascontiguousarray(values))).numpy()
            data = data.reshape(rows, -1)
            writer.add_tensor(tensor.name, data, raw_dtype=target)  # byte shape (rows, bytes)
        else:
            writer.add_tensor(tensor.name, np.asarray(tensor.data), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst
