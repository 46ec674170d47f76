#include "worker/runtime/fused_cpu_ops.h"

#include <ATen/ATen.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SCHISM_X86_KERNELS 1
#endif

#include <algorithm>
#include <cmath>
#include <limits>

#include "worker/runtime/intra_op_parallel.h"

// Compiled with -ffp-contract=off (worker/runtime/CMakeLists.txt): a product and a sum stay two
// roundings, as in the ATen expressions these kernels replace.
namespace schism::model::fused {
namespace {

// Rows per task: about 16k floats, so a 64-row step of a 576-wide model splits over two threads
// and a single row stays on the caller.
int64_t Grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

// Σ a[i]·b[i] in 16 interleaved float32 partial sums (vectorizable).
inline float Dot(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[i + l] * b[i + l];
  }
  float sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// One decode query per row against its cache slot (DecodeAttention's operands as raw pointers).
struct DecodeAttentionArgs {
  const float* q;        // (B, H, hd)
  const float* keys;     // (slots, capacity, kv_heads, hd)
  const float* values;   // same layout
  const int64_t* slots;  // (B)
  const bool* visible;   // (B, S)
  float* out;            // (B, H, hd)
  int64_t heads, kv_heads, hd, capacity, S;
  float scale;
};

// Task (row b, KV head g) serves query heads g·group .. g·group + group - 1 of row b.
struct AttentionTask {
  const float* q;    // the group's first query head
  const float* k;    // column 0 of KV head g in row b's slot
  const float* v;    // the same for the values
  const bool* seen;  // (S) the columns row b sees
  float* o;          // the group's first output head
};

AttentionTask TaskOf(const DecodeAttentionArgs& a, int64_t task) {
  const int64_t group = a.heads / a.kv_heads;
  const int64_t b = task / a.kv_heads, g = task % a.kv_heads;
  const int64_t base = (a.slots[b] * a.capacity * a.kv_heads + g) * a.hd;
  const int64_t head = (b * a.heads + g * group) * a.hd;
  return {a.q + head, a.keys + base, a.values + base, a.visible + b * a.S, a.out + head};
}

// A score that makes SDPA's output NaN: NaN or +inf (-inf only zeroes its column's weight).
inline bool Poisons(float score) {
  return std::isnan(score) || score == std::numeric_limits<float>::infinity();
}

// The portable kernel: per query head, its scores against the visible keys, a max-shifted
// softmax, then Σ p·v. A NaN or +inf score makes the head's output NaN, as in SDPA.
void DecodeAttentionTasksPlain(const DecodeAttentionArgs& a, int64_t begin, int64_t end) {
  const int64_t group = a.heads / a.kv_heads, hd = a.hd, S = a.S, stride = a.kv_heads * hd;
  std::vector<float> row(S);
  for (int64_t task = begin; task < end; ++task) {
    const AttentionTask t = TaskOf(a, task);
    for (int64_t j = 0; j < group; ++j) {
      const float* q = t.q + j * hd;
      float* o = t.o + j * hd;
      float top = -std::numeric_limits<float>::infinity();
      bool poisoned = false;
      for (int64_t s = 0; s < S; ++s) {
        if (!t.seen[s]) continue;
        row[s] = Dot(q, t.k + s * stride, hd) * a.scale;
        poisoned |= Poisons(row[s]);
        top = std::max(top, row[s]);
      }
      if (poisoned) {
        std::fill(o, o + hd, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      float sum = 0;
      std::fill(o, o + hd, 0.0f);
      for (int64_t s = 0; s < S; ++s) {
        if (!t.seen[s]) continue;
        const float p = std::exp(row[s] - top);
        sum += p;
        const float* vs = t.v + s * stride;
        for (int64_t d = 0; d < hd; ++d) o[d] += p * vs[d];
      }
      const float inverse = 1.0f / sum;
      for (int64_t d = 0; d < hd; ++d) o[d] *= inverse;
    }
  }
}

#ifdef SCHISM_X86_KERNELS
#define SCHISM_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma")))

// exp(x) for x ≤ 0 in 16 lanes; lanes outside `keep`, or below -87 (exp < 2^-125: nothing next
// to a softmax sum ≥ 1), give 0. x = n·ln2 + r with |r| ≤ ln2/2 (ln2 in two parts, so n·ln2_hi
// is exact), e^r by its Taylor polynomial to degree 7 (truncation below 1e-8 relative), times 2^n.
SCHISM_AVX512 inline __m512 ExpNonPositive(__m512 x, __mmask16 keep) {
  keep &= _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  return _mm512_maskz_scalef_ps(keep, p, n);
}

// The AVX-512 kernel for head_dim = 16·kChunks: a query head's kChunks vectors stay in registers
// while its scores are taken, the softmax runs 16 columns at a time, and Σ p·v keeps the head's
// output in registers. The group's heads take turns, so a task's keys and values come from
// memory for the first and from L1 for the rest.
template <int kChunks>
SCHISM_AVX512 void DecodeAttentionTasksAvx512(const DecodeAttentionArgs& a, int64_t begin,
                                              int64_t end) {
  constexpr int64_t hd = 16 * kChunks;
  const int64_t group = a.heads / a.kv_heads, S = a.S, stride = a.kv_heads * hd;
  const int64_t padded = (S + 15) / 16 * 16;
  const float minus_infinity = -std::numeric_limits<float>::infinity();
  std::vector<float> row(padded);
  for (int64_t task = begin; task < end; ++task) {
    const AttentionTask t = TaskOf(a, task);
    for (int64_t j = 0; j < group; ++j) {
      std::fill(row.begin() + S, row.end(), minus_infinity);  // the last head's exp zeroed them
      float* o = t.o + j * hd;
      __m512 q[kChunks];
      for (int c = 0; c < kChunks; ++c) q[c] = _mm512_loadu_ps(t.q + j * hd + 16 * c);
      bool poisoned = false;
      for (int64_t s = 0; s < S; ++s) {
        if (!t.seen[s]) {
          row[s] = minus_infinity;
          continue;
        }
        const float* ks = t.k + s * stride;
        __m512 dot = _mm512_mul_ps(q[0], _mm512_loadu_ps(ks));
        for (int c = 1; c < kChunks; ++c)
          dot = _mm512_fmadd_ps(q[c], _mm512_loadu_ps(ks + 16 * c), dot);
        row[s] = _mm512_reduce_add_ps(dot) * a.scale;
        poisoned |= Poisons(row[s]);
      }
      if (poisoned) {
        std::fill(o, o + hd, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      __m512 top = _mm512_set1_ps(minus_infinity);
      for (int64_t s = 0; s < padded; s += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(&row[s]));
      const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(top));
      __m512 sums = _mm512_setzero_ps();
      for (int64_t s = 0; s < padded; s += 16) {
        const __m512 x = _mm512_loadu_ps(&row[s]);
        const __mmask16 seen = _mm512_cmp_ps_mask(x, _mm512_set1_ps(minus_infinity), _CMP_NEQ_OQ);
        const __m512 p = ExpNonPositive(_mm512_sub_ps(x, shift), seen);
        _mm512_storeu_ps(&row[s], p);
        sums = _mm512_add_ps(sums, p);
      }
      __m512 acc[kChunks];
      for (int c = 0; c < kChunks; ++c) acc[c] = _mm512_setzero_ps();
      for (int64_t s = 0; s < S; ++s) {
        if (!t.seen[s]) continue;
        const __m512 p = _mm512_set1_ps(row[s]);
        const float* vs = t.v + s * stride;
        for (int c = 0; c < kChunks; ++c)
          acc[c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vs + 16 * c), acc[c]);
      }
      const __m512 inverse = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sums));
      for (int c = 0; c < kChunks; ++c)
        _mm512_storeu_ps(o + 16 * c, _mm512_mul_ps(acc[c], inverse));
    }
  }
}

bool CpuHasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma");
  return has;
}
#endif  // SCHISM_X86_KERNELS

using AttentionKernel = void (*)(const DecodeAttentionArgs&, int64_t, int64_t);

// The AVX-512 kernel for the head sizes models use (32 to 256), else the portable one.
AttentionKernel DecodeAttentionKernel(int64_t hd, bool portable) {
#ifdef SCHISM_X86_KERNELS
  if (!portable && CpuHasAvx512()) {
    switch (hd) {
      case 32:
        return DecodeAttentionTasksAvx512<2>;
      case 64:
        return DecodeAttentionTasksAvx512<4>;
      case 128:
        return DecodeAttentionTasksAvx512<8>;
      case 256:
        return DecodeAttentionTasksAvx512<16>;
      default:
        break;
    }
  }
#endif
  return DecodeAttentionTasksPlain;
}

}  // namespace

bool Applies(const at::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat;
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const int64_t width = x.size(-1), rows = x.numel() / width;
  TORCH_CHECK(Applies(x) && Applies(weight) && weight.numel() == width,
              "fused::RmsNorm: float32 CPU operands of matching width");
  const at::Tensor xc = x.contiguous(), wc = weight.contiguous();
  at::Tensor out = at::empty_like(xc);
  const float* xp = xc.data_ptr<float>();
  const float* wp = wc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float epsilon = static_cast<float>(eps);
  at::parallel_for(0, rows, Grain(width), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = xp + r * width;
      float* yr = op + r * width;
      double squares = 0;
      for (int64_t i = 0; i < width; ++i) squares += static_cast<double>(xr[i]) * xr[i];
      const float mean = static_cast<float>(squares) / static_cast<float>(width);
      const float inverse = 1.0f / std::sqrt(mean + epsilon);
      for (int64_t i = 0; i < width; ++i) yr[i] = wp[i] * (xr[i] * inverse);
    }
  });
  return out;
}

at::Tensor Rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && cos.dim() == 4 && Applies(x) && Applies(cos) && Applies(sin),
              "fused::Rope: float32 CPU x (B, T, H, hd) and tables (B, 1, T, hd)");
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), hd = x.size(3), half = hd / 2;
  TORCH_CHECK(hd % 2 == 0 && cos.size(0) == B && cos.size(2) == T && cos.size(3) == hd &&
                  sin.sizes() == cos.sizes(),
              "fused::Rope: tables of the wrong shape");
  const at::Tensor xc = x.contiguous(), cc = cos.contiguous(), sc = sin.contiguous();
  at::Tensor out = at::empty_like(xc);
  const float* xp = xc.data_ptr<float>();
  const float* cp = cc.data_ptr<float>();
  const float* sp = sc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B * T, Grain(H * hd), [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const float* c = cp + bt * hd;
      const float* s = sp + bt * hd;
      for (int64_t h = 0; h < H; ++h) {
        const float* xh = xp + (bt * H + h) * hd;
        float* yh = op + (bt * H + h) * hd;
        for (int64_t i = 0; i < half; ++i) yh[i] = xh[i] * c[i] + (-xh[i + half]) * s[i];
        for (int64_t i = half; i < hd; ++i) yh[i] = xh[i] * c[i] + xh[i - half] * s[i];
      }
    }
  });
  return out;
}

at::Tensor Adapter(at::Tensor y, const at::Tensor& x, const at::Tensor& a, const at::Tensor& b,
                   const at::Tensor& scale, const at::Tensor& row_trial) {
  TORCH_CHECK(y.dim() == 3 && x.dim() == 3 && Applies(y) && Applies(x) && Applies(a) &&
                  Applies(b) && (!scale.defined() || Applies(scale)) && y.is_contiguous(),
              "fused::Adapter: float32 CPU operands, y contiguous");
  const int64_t B = y.size(0), T = y.size(1), out = y.size(2), in = x.size(2), k = a.size(0);
  TORCH_CHECK(x.size(0) == B && x.size(1) == T && a.size(1) == in && b.size(0) == k &&
                  b.size(1) == out && (!scale.defined() || scale.sizes() == b.sizes()) &&
                  row_trial.numel() == B,
              "fused::Adapter: mismatched shapes");
  const at::Tensor xc = x.contiguous(), ac = a.contiguous(), bc = b.contiguous();
  const at::Tensor sc = scale.defined() ? scale.contiguous() : at::Tensor();
  const at::Tensor trials = row_trial.to(at::kCPU, at::kLong).contiguous();
  const int64_t* trial = trials.data_ptr<int64_t>();
  for (int64_t r = 0; r < B; ++r)
    TORCH_CHECK(trial[r] >= 0 && trial[r] < k, "fused::Adapter: row trial out of range");
  const float* xp = xc.data_ptr<float>();
  const float* ap = ac.data_ptr<float>();
  const float* bp = bc.data_ptr<float>();
  const float* sp = sc.defined() ? sc.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, B * T, Grain(in + out), [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const int64_t t = trial[bt / T];
      const float dot = Dot(xp + bt * in, ap + t * in, in);
      const float* bt_b = bp + t * out;
      float* yr = yp + bt * out;
      if (sp != nullptr) {
        const float* st = sp + t * out;
        for (int64_t o = 0; o < out; ++o) yr[o] = (yr[o] + dot * bt_b[o]) * st[o];
      } else {
        for (int64_t o = 0; o < out; ++o) yr[o] = yr[o] + dot * bt_b[o];
      }
    }
  });
  return y;
}

bool DecodeAttentionHasFastKernel(int64_t head_dim) {
  return DecodeAttentionKernel(head_dim, /*portable=*/false) != DecodeAttentionTasksPlain;
}

at::Tensor DecodeAttention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                           const std::vector<int64_t>& slots, const at::Tensor& visible, int64_t S,
                           double scale, bool portable_kernel) {
  TORCH_CHECK(q.dim() == 4 && q.size(1) == 1 && keys.dim() == 4 && Applies(q) && Applies(keys) &&
                  Applies(values) && keys.sizes() == values.sizes() && keys.is_contiguous() &&
                  values.is_contiguous(),
              "fused::DecodeAttention: float32 CPU q (B, 1, H, hd) and contiguous caches "
              "(slots, capacity, kv_heads, hd)");
  const int64_t B = q.size(0), H = q.size(2), hd = q.size(3);
  const int64_t kv_heads = keys.size(2), capacity = keys.size(1);
  TORCH_CHECK(keys.size(3) == hd && kv_heads > 0 && H % kv_heads == 0,
              "fused::DecodeAttention: head sizes do not match");
  TORCH_CHECK(static_cast<int64_t>(slots.size()) == B && S >= 1 && S <= capacity,
              "fused::DecodeAttention: one slot per row and 1 <= S <= capacity");
  TORCH_CHECK(
      visible.scalar_type() == at::kBool && visible.device().is_cpu() && visible.numel() == B * S,
      "fused::DecodeAttention: visible must be a (B, S) bool mask on the CPU");
  const at::Tensor seen = visible.contiguous().view({-1});
  for (const int64_t slot : slots)
    TORCH_CHECK(slot >= 0 && slot < keys.size(0), "fused::DecodeAttention: slot out of range");
  const at::Tensor qc = q.contiguous();
  at::Tensor out = at::empty({B, 1, H * hd}, q.options());
  const DecodeAttentionArgs args{qc.data_ptr<float>(),
                                 keys.data_ptr<float>(),
                                 values.data_ptr<float>(),
                                 slots.data(),
                                 seen.data_ptr<bool>(),
                                 out.data_ptr<float>(),
                                 H,
                                 kv_heads,
                                 hd,
                                 capacity,
                                 S,
                                 static_cast<float>(scale)};
  // A task reads S columns of one KV head's keys and values: about S·hd·2 floats.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, 2 * S * hd));
  const AttentionKernel kernel = DecodeAttentionKernel(hd, portable_kernel);
  at::parallel_for(0, B * kv_heads, grain,
                   [&](int64_t begin, int64_t end) { kernel(args, begin, end); });
  return out;
}

}  // namespace schism::model::fused
