// Causal GQA attention, blocked flash-attention style (online softmax, nothing of size
// rows x keys is ever materialised).
//
// Why "transposed": the query heads that share a KV head (a GQA group) and a block of query
// tokens form R = 16 * NV "rows" that all read the same keys. Everything is kept with these
// rows in the vector lanes:
//   Qt (d, R)       queries, pre-scaled by 1/sqrt(d), transposed once per block
//   St (keys, R)    scores of one key tile: St[j] = sum_c K[j][c] * Qt[c]   (broadcast K)
//   Ot (d, R)       output accumulator:   Ot[c] = Ot[c] * alpha + sum_j V[j][c] * P[j]
// so K and V are read straight from the token-major cache (no transposes or copies), the
// softmax max / sum / rescale are plain lane-wise vector ops, and each of the two inner
// products is a register-blocked outer-product kernel like a GEMM micro-kernel.
// A bf16 or int8 cache is widened one key tile (of one KV head) at a time into a per-thread
// float32 buffer, which then feeds the same micro-kernels; each tile is widened once per block
// of R query rows, a d-th of the FLOPs spent on it.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace swiftkv::kernels {

namespace {

using simd::v16f;
using simd::v16i;

// St[kb] = sum_c K[key kb][c] * Qt[c] for KB keys at once (KB * NV accumulators).
template <int NV, int KB>
inline void score_tile(const float* key, int64_t kv_stride, const v16f* qt, int64_t d, v16f* st) {
  v16f acc[KB][NV] = {};
  for (int64_t c = 0; c < d; ++c) {
    v16f qv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) qv[v] = qt[c * NV + v];
#pragma GCC unroll 24
    for (int kb = 0; kb < KB; ++kb) {
      const float k = key[kb * kv_stride + c];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[kb][v] += k * qv[v];
    }
  }
  for (int kb = 0; kb < KB; ++kb)
    for (int v = 0; v < NV; ++v) st[kb * NV + v] = acc[kb][v];
}

// Ot[c] = Ot[c] * alpha + sum_j V[j][c] * P[j] for CB consecutive c (CB * NV accumulators).
template <int NV, int CB>
inline void value_tile(const float* value, int64_t kv_stride, int64_t keys, const v16f* p, const v16f* alpha,
                       v16f* ot) {
  v16f acc[CB][NV];
  for (int cb = 0; cb < CB; ++cb)
    for (int v = 0; v < NV; ++v) acc[cb][v] = ot[cb * NV + v] * alpha[v];
  for (int64_t j = 0; j < keys; ++j) {
    v16f pv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) pv[v] = p[j * NV + v];
    const float* vj = value + j * kv_stride;
#pragma GCC unroll 24
    for (int cb = 0; cb < CB; ++cb) {
      const float x = vj[cb];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[cb][v] += x * pv[v];
    }
  }
  for (int cb = 0; cb < CB; ++cb)
    for (int v = 0; v < NV; ++v) ot[cb * NV + v] = acc[cb][v];
}

struct Problem {
  const float* q;
  int64_t q_stride;
  KvView kv;
  const int32_t* positions;
  int64_t num_kv_heads, group, head_dim, flat_rows;  // flat_rows = rows * group: (query, head-in-group) pairs
  float* out;
  int64_t out_stride;
};

// Register blocking per NV (vectors of rows): keys per score micro-tile, head-dim values per
// value micro-tile, keys per tile. KB*NV and CB*NV stay <= 24 of the 32 vector registers.
template <int NV>
struct Blocking {
  static constexpr int KB = NV == 4 ? 6 : NV == 2 ? 10 : 16;
  static constexpr int CB = NV == 4 ? 4 : 8;
  static constexpr int kKeyTile = KB * (NV == 4 ? 10 : 8);
};

// Per-thread working set for one block of R = 16 * NV flat rows (plus, for a bf16 or int8
// cache, one key tile of K and of V widened to float32).
struct Workspace {
  std::vector<v16f> qt, st, ot;
  std::vector<float> key_tile, value_tile;
  void reserve(int nv, int64_t head_dim, int64_t key_tile_size, KvDType dtype) {
    qt.resize(static_cast<size_t>(head_dim * nv));
    ot.resize(static_cast<size_t>(head_dim * nv));
    st.resize(static_cast<size_t>(key_tile_size * nv));
    if (dtype != KvDType::F32) {
      key_tile.resize(static_cast<size_t>(key_tile_size * head_dim));
      value_tile.resize(static_cast<size_t>(key_tile_size * head_dim));
    }
  }
};

// float32 rows of one KV head's keys or values, `stride` floats apart.
struct TileRows {
  const float* data;
  int64_t stride;
};

// `tile` consecutive tokens of cache block `block` from token `in_block` on, KV head `kv_head`, as
// float32 rows: the cache itself when it holds float32, else widened into `buffer` (tile, d).
template <KvDType DT>
inline TileRows tile_as_f32(const Problem& pb, const void* const* blocks, const float* const* scales,
                            int64_t block, int64_t in_block, int64_t tile, int64_t kv_head, float* buffer) {
  const int64_t d = pb.head_dim, kv_stride = pb.kv.token_stride, offset = in_block * kv_stride + kv_head * d;
  if constexpr (DT == KvDType::F32) {
    return {static_cast<const float*>(blocks[block]) + offset, kv_stride};
  } else if constexpr (DT == KvDType::BF16) {
    const uint16_t* source = static_cast<const uint16_t*>(blocks[block]) + offset;
    for (int64_t t = 0; t < tile; ++t) from_bf16(source + t * kv_stride, d, buffer + t * d);
    return {buffer, d};
  } else {
    const int8_t* source = static_cast<const int8_t*>(blocks[block]) + offset;
    const float* scale = scales[block] + in_block * pb.num_kv_heads + kv_head;
    for (int64_t t = 0; t < tile; ++t)
      dequantize_int8(source + t * kv_stride, d, scale[t * pb.num_kv_heads], buffer + t * d);
    return {buffer, d};
  }
}

// One (KV head, block of flat rows [row_begin, row_begin + R)) unit, over a cache of DT.
template <int NV, KvDType DT>
void attention_block(const Problem& pb, int64_t kv_head, int64_t row_begin, Workspace& ws) {
  using B = Blocking<NV>;
  constexpr int R = NV * simd::kLanes;
  const int64_t d = pb.head_dim;
  const int64_t row_count = std::min<int64_t>(R, pb.flat_rows - row_begin);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  // Gather and transpose the block's queries; padding lanes get zero queries at the block's
  // last position, so they stay finite and are simply not written out.
  float* qt = reinterpret_cast<float*>(ws.qt.data());
  alignas(64) int32_t pos[R];
  int32_t max_pos = 0, min_pos = INT32_MAX;
  for (int64_t i = 0; i < row_count; ++i) {
    const int64_t flat = row_begin + i, r = flat / pb.group, h = kv_head * pb.group + flat % pb.group;
    pos[i] = pb.positions[r];
    max_pos = std::max(max_pos, pos[i]);
    min_pos = std::min(min_pos, pos[i]);
    const float* qr = pb.q + r * pb.q_stride + h * d;
    for (int64_t c = 0; c < d; ++c) qt[c * R + i] = qr[c] * scale;
  }
  for (int64_t i = row_count; i < R; ++i) {
    pos[i] = max_pos;
    for (int64_t c = 0; c < d; ++c) qt[c * R + i] = 0.0f;
  }
  v16i pos_v[NV];
  for (int v = 0; v < NV; ++v) std::memcpy(&pos_v[v], pos + v * simd::kLanes, sizeof(v16i));

  v16f* ot = ws.ot.data();
  v16f* st = ws.st.data();
  std::fill(ws.ot.begin(), ws.ot.end(), v16f{});
  v16f running_max[NV], running_sum[NV];
  for (int v = 0; v < NV; ++v) running_max[v] = simd::splat(-INFINITY), running_sum[v] = v16f{};

  const int64_t keys = static_cast<int64_t>(max_pos) + 1;
  int64_t tile = 0;
  for (int64_t j0 = 0; j0 < keys; j0 += tile) {
    // A tile never crosses a cache block: its keys are contiguous.
    const int64_t block = j0 / pb.kv.block_size, in_block = j0 - block * pb.kv.block_size;
    tile = std::min({static_cast<int64_t>(B::kKeyTile), keys - j0, pb.kv.block_size - in_block});
    const auto [key_tile, key_stride] = tile_as_f32<DT>(pb, pb.kv.key_blocks, pb.kv.key_scales, block,
                                                        in_block, tile, kv_head, ws.key_tile.data());

    // Scores (tile, R).
    int64_t j = 0;
    for (; j + B::KB <= tile; j += B::KB)
      score_tile<NV, B::KB>(key_tile + j * key_stride, key_stride, ws.qt.data(), d, st + j * NV);
    for (; j < tile; ++j)
      score_tile<NV, 1>(key_tile + j * key_stride, key_stride, ws.qt.data(), d, st + j * NV);

    // Causal mask, only on tiles that reach past some row's position.
    const bool masked = j0 + tile - 1 > min_pos;
    if (masked) {
      for (int64_t jj = 0; jj < tile; ++jj) {
        const v16i key_index = v16i{} + static_cast<int32_t>(j0 + jj);
        for (int v = 0; v < NV; ++v)
          st[jj * NV + v] = key_index > pos_v[v] ? simd::splat(-INFINITY) : st[jj * NV + v];
      }
    }

    // Online softmax: new max, rescale factor for what was accumulated, P = exp(S - max).
    // Key 0 is visible to every row, so after the first tile every max is finite.
    v16f tile_max[NV], alpha[NV], tile_sum[NV];
    for (int v = 0; v < NV; ++v) tile_max[v] = running_max[v];
    for (int64_t jj = 0; jj < tile; ++jj)
      for (int v = 0; v < NV; ++v) tile_max[v] = simd::vmax(tile_max[v], st[jj * NV + v]);
    for (int v = 0; v < NV; ++v) {
      alpha[v] = simd::exp(running_max[v] - tile_max[v]);
      running_max[v] = tile_max[v];
      tile_sum[v] = v16f{};
    }
    for (int64_t jj = 0; jj < tile; ++jj) {
      for (int v = 0; v < NV; ++v) {
        const v16f p = simd::exp(st[jj * NV + v] - running_max[v]);
        st[jj * NV + v] = p;
        tile_sum[v] += p;
      }
    }
    for (int v = 0; v < NV; ++v) running_sum[v] = running_sum[v] * alpha[v] + tile_sum[v];

    // Ot = Ot * alpha + V^T P.
    const auto [value_tile_ptr, value_stride] = tile_as_f32<DT>(
        pb, pb.kv.value_blocks, pb.kv.value_scales, block, in_block, tile, kv_head, ws.value_tile.data());
    int64_t c = 0;
    for (; c + B::CB <= d; c += B::CB)
      value_tile<NV, B::CB>(value_tile_ptr + c, value_stride, tile, st, alpha, ot + c * NV);
    for (; c < d; ++c) value_tile<NV, 1>(value_tile_ptr + c, value_stride, tile, st, alpha, ot + c * NV);
  }

  // out[r, h, :] = Ot[:, i] / sum[i]
  alignas(64) float inv_sum[R];
  for (int v = 0; v < NV; ++v) {
    const v16f s = 1.0f / running_sum[v];
    std::memcpy(inv_sum + v * simd::kLanes, &s, sizeof s);
  }
  const float* ot_f = reinterpret_cast<const float*>(ot);
  for (int64_t i = 0; i < row_count; ++i) {
    const int64_t flat = row_begin + i, r = flat / pb.group, h = kv_head * pb.group + flat % pb.group;
    float* o = pb.out + r * pb.out_stride + h * d;
    for (int64_t cc = 0; cc < d; ++cc) o[cc] = ot_f[cc * R + i] * inv_sum[i];
  }
}

template <int NV, KvDType DT>
void run_attention(const Problem& pb) {
  constexpr int R = NV * simd::kLanes;
  const int64_t blocks = (pb.flat_rows + R - 1) / R;
  const int64_t units = blocks * pb.num_kv_heads;
#pragma omp parallel if (units > 1)
  {
    Workspace ws;
    ws.reserve(NV, pb.head_dim, Blocking<NV>::kKeyTile, DT);
    // Later blocks see more keys (causal): hand them out first so the tail is short.
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t block = blocks - 1 - u / pb.num_kv_heads, kv_head = u % pb.num_kv_heads;
      attention_block<NV, DT>(pb, kv_head, block * R, ws);
    }
  }
}

// Fewest lanes that hold the flat rows: decode (1 token x 4 heads) uses one vector, prefill four.
template <KvDType DT>
void run_attention(const Problem& pb) {
  if (pb.flat_rows <= 16)
    run_attention<1, DT>(pb);
  else if (pb.flat_rows <= 32)
    run_attention<2, DT>(pb);
  else
    run_attention<4, DT>(pb);
}

}  // namespace

// (rows, nq, d) queries x paged (tokens, nkv, d) cache -> (rows, nq * d)
void attention(const float* q, int64_t rows, int64_t q_stride, const KvView& kv, const int32_t* positions,
               const AttentionShape& shape, float* out, int64_t out_stride) {
  if (rows <= 0) return;
  if (shape.num_heads <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.num_heads % shape.num_kv_heads != 0)
    throw Error("attention: num_heads (" + std::to_string(shape.num_heads) +
                ") must be a positive multiple of "
                "num_kv_heads (" +
                std::to_string(shape.num_kv_heads) + ")");
  if (kv.block_size <= 0) throw Error("attention: block_size must be positive");
  if (kv.dtype == KvDType::INT8 && (!kv.key_scales || !kv.value_scales))
    throw Error("attention: an int8 KV cache needs its key and value scales");
  for (int64_t r = 0; r < rows; ++r)
    if (positions[r] < 0) throw Error("attention: negative position " + std::to_string(positions[r]));
  const int64_t group = shape.num_heads / shape.num_kv_heads;
  const Problem pb{q,     q_stride,       kv,           positions, shape.num_kv_heads,
                   group, shape.head_dim, rows * group, out,       out_stride};
  switch (kv.dtype) {
    case KvDType::F32:
      return run_attention<KvDType::F32>(pb);
    case KvDType::BF16:
      return run_attention<KvDType::BF16>(pb);
    case KvDType::INT8:
      return run_attention<KvDType::INT8>(pb);
  }
}

void attention(const float* q, int64_t rows, int64_t q_stride, const float* key, const float* value,
               int64_t kv_stride, const int32_t* positions, const AttentionShape& shape, float* out,
               int64_t out_stride) {
  // One block as long as any position can be.
  const void* key_block = key;
  const void* value_block = value;
  const KvView contiguous{&key_block, &value_block, int64_t{1} << 40, kv_stride};
  attention(q, rows, q_stride, contiguous, positions, shape, out, out_stride);
}

}  // namespace swiftkv::kernels
