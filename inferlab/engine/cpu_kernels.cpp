// The engine's hand-written CPU kernels for the decode step (lesson 07's paged attention, the CPU
// side of what gpu_kernels.py does in Triton). Built once by cpu_kernels.py with the machine's C++
// compiler (torch.utils.cpp_extension); every loop runs in fp32 and stores in the tensors' dtype.
//
// paged_decode_attention: one query per sequence over its cached keys, read through the block
//   table where they lie (no gathered copy, no padding, no mask); each key and value row is read
//   once for all the query heads that share it (grouped-query attention).
// rope_and_store: RoPE on the new queries and keys, keys and values written to their cache slots,
//   in one pass over the fused Q/K/V projection.
// add_rms_norm: the residual add + RMS norm, one pass instead of eight PyTorch operations.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

template <typename scalar_t>
void load_row(const scalar_t* src, float* dst, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<float>(src[j]);
}

// One work item = one sequence and `span` of its KV heads: all of them when there are enough
// sequences to keep every thread busy (each key row is then one contiguous read), else one.
template <typename scalar_t>
void decode_rows(const scalar_t* q, const scalar_t* k_cache, const scalar_t* v_cache,
                 const int64_t* tables, const int64_t* lens, scalar_t* out, int64_t batch,
                 int64_t heads, int64_t kv_heads, int64_t d, int64_t block_size,
                 int64_t width, float scale) {
  const int64_t group = heads / kv_heads, slot_width = kv_heads * d;
  const int64_t span = batch >= 2 * at::get_num_threads() ? kv_heads : 1;
  const int64_t n_heads = span * group, items_per_seq = kv_heads / span;
  at::parallel_for(0, batch * items_per_seq, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> query(n_heads * d), acc(n_heads * d), row(span * d), probs;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / items_per_seq, h0 = (item % items_per_seq) * span;
      const int64_t len = lens[b], first = (b * heads + h0 * group) * d;  // first query head
      const int64_t* table = tables + b * width;
      probs.resize(n_heads * len);
      load_row(q + first, query.data(), n_heads * d);
      for (int64_t t = 0; t < len; ++t) {                  // scores, each key row read once
        const int64_t block = table[t / block_size];
        if (t % block_size == 0 && t + block_size < len)   // the next block is elsewhere
          __builtin_prefetch(k_cache + table[t / block_size + 1] * block_size * slot_width);
        load_row(k_cache + (block * block_size + t % block_size) * slot_width + h0 * d,
                 row.data(), span * d);
        for (int64_t h = 0; h < n_heads; ++h) {
          const float* qh = query.data() + h * d;
          const float* kh = row.data() + (h / group) * d;
          float s = 0.f;
#pragma omp simd reduction(+ : s)
          for (int64_t j = 0; j < d; ++j) s += qh[j] * kh[j];
          probs[h * len + t] = s * scale;
        }
      }
      for (int64_t h = 0; h < n_heads; ++h) {              // softmax of each query head
        float* p = probs.data() + h * len;
        float top = -std::numeric_limits<float>::infinity(), sum = 0.f;
        for (int64_t t = 0; t < len; ++t) top = std::max(top, p[t]);
        for (int64_t t = 0; t < len; ++t) sum += (p[t] = std::exp(p[t] - top));
        for (int64_t t = 0; t < len; ++t) p[t] /= sum;
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t t = 0; t < len; ++t) {                  // weighted values, each row read once
        const int64_t block = table[t / block_size];
        load_row(v_cache + (block * block_size + t % block_size) * slot_width + h0 * d,
                 row.data(), span * d);
        for (int64_t h = 0; h < n_heads; ++h) {
          const float p = probs[h * len + t];
          const float* vh = row.data() + (h / group) * d;
          float* a = acc.data() + h * d;
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) a[j] += p * vh[j];
        }
      }
      for (int64_t i = 0; i < n_heads * d; ++i) out[first + i] = static_cast<scalar_t>(acc[i]);
    }
  });
}

// x rotated by its position: x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1].
template <typename scalar_t>
void rotate(const scalar_t* x, const scalar_t* cos, const scalar_t* sin, scalar_t* out, int64_t d) {
  const int64_t half = d / 2;
  for (int64_t j = 0; j < d; ++j) {
    const float other = j < half ? -static_cast<float>(x[j + half]) : static_cast<float>(x[j - half]);
    out[j] = static_cast<scalar_t>(static_cast<float>(x[j]) * static_cast<float>(cos[j]) +
                                   other * static_cast<float>(sin[j]));
  }
}

template <typename scalar_t>
void rope_store_rows(const scalar_t* qkv, int64_t row_stride, const scalar_t* cos,
                    const scalar_t* sin, const int64_t* positions, const int64_t* slots,
                    scalar_t* q, scalar_t* k_cache, scalar_t* v_cache, int64_t tokens,
                    int64_t heads, int64_t kv_heads, int64_t d) {
  at::parallel_for(0, tokens, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const scalar_t* row = qkv + n * row_stride;
      const scalar_t* c = cos + positions[n] * d;
      const scalar_t* s = sin + positions[n] * d;
      for (int64_t h = 0; h < heads; ++h) rotate(row + h * d, c, s, q + (n * heads + h) * d, d);
      const int64_t slot = slots[n] * kv_heads * d;
      for (int64_t h = 0; h < kv_heads; ++h)
        rotate(row + (heads + h) * d, c, s, k_cache + slot + h * d, d);
      std::copy(row + (heads + kv_heads) * d, row + (heads + 2 * kv_heads) * d, v_cache + slot);
    }
  });
}

// h + delta (rounded to the dtype, the new residual stream), then RMS norm of it in fp32, rounded,
// times the weight: transformers' order of roundings.
template <typename scalar_t>
void add_rms_norm_rows(const scalar_t* h, const scalar_t* delta, const scalar_t* weight,
                       scalar_t* h_out, scalar_t* x_out, int64_t rows, int64_t width, float eps) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> sum(width);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t o = r * width;
      float squares = 0.f;
      for (int64_t j = 0; j < width; ++j) {
        const scalar_t rounded = static_cast<scalar_t>(static_cast<float>(h[o + j]) +
                                                       static_cast<float>(delta[o + j]));
        h_out[o + j] = rounded;
        sum[j] = static_cast<float>(rounded);
        squares += sum[j] * sum[j];
      }
      const float inv = 1.f / std::sqrt(squares / static_cast<float>(width) + eps);
      for (int64_t j = 0; j < width; ++j) {
        const float normed = static_cast<float>(static_cast<scalar_t>(sum[j] * inv));
        x_out[o + j] = static_cast<scalar_t>(static_cast<float>(weight[j]) * normed);
      }
    }
  });
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "inferlab cpu kernels: ", what); }

}  // namespace

// q [B, heads, d]; caches [blocks, block_size, kv_heads, d]; block_tables [B, width] and
// context_lens [B] int64 -> [B, heads, d] in q's dtype.
torch::Tensor paged_decode_attention(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
                                     torch::Tensor block_tables, torch::Tensor context_lens,
                                     double scale) {
  check(q.dim() == 3 && k_cache.dim() == 4 && q.is_contiguous() && k_cache.is_contiguous() &&
            v_cache.is_contiguous(), "q [B, heads, d] and caches [blocks, block_size, kv_heads, d], "
            "contiguous");
  check(block_tables.scalar_type() == at::kLong && context_lens.scalar_type() == at::kLong &&
            block_tables.is_contiguous() && context_lens.is_contiguous(),
        "block_tables and context_lens: contiguous int64");
  check(q.scalar_type() == k_cache.scalar_type() && q.scalar_type() == v_cache.scalar_type(),
        "q and the caches in one dtype");
  const int64_t heads = q.size(1), kv_heads = k_cache.size(2);
  check(heads % kv_heads == 0 && q.size(2) == k_cache.size(3), "heads divisible by kv_heads");
  auto out = torch::empty_like(q);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "paged_decode", [&] {
    decode_rows<scalar_t>(q.data_ptr<scalar_t>(), k_cache.data_ptr<scalar_t>(),
                               v_cache.data_ptr<scalar_t>(), block_tables.data_ptr<int64_t>(),
                               context_lens.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
                               q.size(0), heads, kv_heads, q.size(2), k_cache.size(1),
                               block_tables.size(1), static_cast<float>(scale));
  });
  return out;
}

// qkv [tokens, (heads + 2 kv_heads) d] (rows may be strided); cos/sin [max_len, d]; caches
// [slots, kv_heads, d] -> rotated queries [tokens, heads, d].
torch::Tensor rope_and_store(torch::Tensor qkv, torch::Tensor cos, torch::Tensor sin,
                             torch::Tensor positions, torch::Tensor slot_mapping,
                             torch::Tensor k_cache, torch::Tensor v_cache, int64_t heads,
                             int64_t kv_heads) {
  const int64_t d = k_cache.size(-1), tokens = qkv.size(0);
  check(qkv.dim() == 2 && qkv.stride(1) == 1 && qkv.size(1) == (heads + 2 * kv_heads) * d,
        "qkv [tokens, (heads + 2 kv_heads) * head_dim] with contiguous rows");
  check(cos.is_contiguous() && sin.is_contiguous() && k_cache.is_contiguous() &&
            v_cache.is_contiguous() && cos.size(-1) == d, "contiguous cos/sin tables and caches");
  check(positions.scalar_type() == at::kLong && slot_mapping.scalar_type() == at::kLong &&
            positions.is_contiguous() && slot_mapping.is_contiguous(),
        "positions and slot_mapping: contiguous int64");
  check(qkv.scalar_type() == k_cache.scalar_type() && qkv.scalar_type() == cos.scalar_type(),
        "qkv, the tables and the caches in one dtype");
  auto q = torch::empty({tokens, heads, d}, qkv.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, qkv.scalar_type(), "rope_store", [&] {
    rope_store_rows<scalar_t>(qkv.data_ptr<scalar_t>(), qkv.stride(0), cos.data_ptr<scalar_t>(),
                             sin.data_ptr<scalar_t>(), positions.data_ptr<int64_t>(),
                             slot_mapping.data_ptr<int64_t>(), q.data_ptr<scalar_t>(),
                             k_cache.data_ptr<scalar_t>(), v_cache.data_ptr<scalar_t>(), tokens,
                             heads, kv_heads, d);
  });
  return q;
}

// (h + delta, rms_norm(h + delta) * weight) for h, delta [rows, width].
std::vector<torch::Tensor> add_rms_norm(torch::Tensor h, torch::Tensor delta, torch::Tensor weight,
                                        double eps) {
  check(h.dim() == 2 && h.sizes() == delta.sizes() && h.is_contiguous() && delta.is_contiguous() &&
            weight.is_contiguous() && weight.numel() == h.size(1),
        "h and delta [rows, width], contiguous, and a weight of width values");
  check(h.scalar_type() == delta.scalar_type() && h.scalar_type() == weight.scalar_type(),
        "h, delta and weight in one dtype");
  auto h_out = torch::empty_like(h), x = torch::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "add_rms_norm", [&] {
    add_rms_norm_rows<scalar_t>(h.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(),
                                weight.data_ptr<scalar_t>(), h_out.data_ptr<scalar_t>(),
                                x.data_ptr<scalar_t>(), h.size(0), h.size(1),
                                static_cast<float>(eps));
  });
  return {h_out, x};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_decode_attention", &paged_decode_attention);
  m.def("rope_and_store", &rope_and_store);
  m.def("add_rms_norm", &add_rms_norm);
}
