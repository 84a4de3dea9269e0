// HLG's local window attention and global window-token attention, forward and backward, fp32, straight
// from token layout (windows are index arithmetic on the token tensor, never copied partitions).
//
// Forward units own their outputs exclusively: local (batch, window, head), global (batch, head, chunk of
// queries). Backward units accumulate the gradients shared between units (the bias tables; the global keys
// and values) in per-thread buffers, summed in thread order at the end under a static schedule, so the
// result is the same on every run with the same thread count.
#include <algorithm>
#include <vector>

#include "hrvit/kernels/hlg_attention.h"

#include "hrvit/attention_tiles.h"
#include "hrvit/fast_math.h"
#include "hrvit/threading.h"

namespace hrvit {
namespace {

constexpr index_t kWindow = 7, kArea = kWindow * kWindow;
constexpr index_t kGlobalChunk = 4 * kQueryBlock;  // queries of a global forward unit

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// The real pixels of window w (token indices) and their slots 7i + j in the window.
void window_tokens(const HlgLocalShape& s, index_t w, std::vector<index_t>& tokens, std::vector<index_t>& slots) {
  const index_t nh = ceil_div(s.height, kWindow), nw = ceil_div(s.width, kWindow);
  const index_t a = w / nw, b = w % nw;
  tokens.clear();
  slots.clear();
  for (index_t i = 0; i < kWindow; ++i)
    for (index_t j = 0; j < kWindow; ++j) {
      const index_t y = s.dilated ? nh * i + a : kWindow * a + i;
      const index_t x = s.dilated ? nw * j + b : kWindow * b + j;
      if (y < s.height && x < s.width) {
        tokens.push_back(y * s.width + x);
        slots.push_back(i * kWindow + j);
      }
    }
}

index_t window_count(const HlgLocalShape& s) {
  return ceil_div(s.height, kWindow) * ceil_div(s.width, kWindow);
}

// The heads' 49 x 49 window biases in base 2, like the logits, in two layouts: table(head)[query slot][key
// slot] for windows cut by the map's edge (slots gathered one by one), and key-major rows padded with zeros to
// whole query blocks for whole windows, whose slots are 0..48 in order: a key's biases for a query block are
// then one contiguous run of vectors (measured against the gathered adds: hlg_small's stage-2 forward at 512,
// 3.1 -> 2.3-2.6 ms).
class WindowBias {
 public:
  static constexpr index_t kPaddedArea = (kArea + kQueryBlock - 1) / kQueryBlock * kQueryBlock;

  WindowBias(const float* bias, index_t heads)
      : table_(bias, bias + heads * kArea * kArea), key_major_(heads * kArea * kPaddedArea, 0.0f) {
    for (float& x : table_) x *= kLog2e;
    for (index_t h = 0; h < heads; ++h)
      for (index_t query = 0; query < kArea; ++query)
        for (index_t key = 0; key < kArea; ++key)
          key_major_[(h * kArea + key) * kPaddedArea + query] = table_[(h * kArea + query) * kArea + key];
  }

  // Adds head's bias to S^T (n keys from j0 x kQueryBlock; m queries from i0) of a window with these slots.
  void add(float* ST, index_t head, const std::vector<index_t>& slots, index_t i0, index_t m, index_t j0,
           index_t n) const {
    if (static_cast<index_t>(slots.size()) == kArea) {  // a whole window; columns past m get zeros or biases
      const float* rows = key_major_.data() + (head * kArea + j0) * kPaddedArea + i0;
      for (index_t r = 0; r < n; ++r)
        for (index_t i = 0; i < kQueryBlock; i += kLanes)
          store(ST + r * kQueryBlock + i, load(ST + r * kQueryBlock + i) + load(rows + r * kPaddedArea + i));
      return;
    }
    const float* table = table_.data() + head * kArea * kArea;
    for (index_t r = 0; r < n; ++r)
      for (index_t i = 0; i < m; ++i) ST[r * kQueryBlock + i] += table[slots[i0 + i] * kArea + slots[j0 + r]];
  }

 private:
  std::vector<float> table_, key_major_;
};

// Values as rows when the head dim is whole vectors (as in cswin_attention.cpp), else as V^T.
bool value_rows(index_t d) { return d % kLanes == 0 && d >= 2 * kLanes; }

int thread_count(int num_threads) { return num_threads > 0 ? num_threads : 1; }

int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Adds the per-thread buffers (threads x n) into dst (n), in thread order.
void sum_threads(const std::vector<std::vector<float>>& parts, index_t n, float* dst) {
  std::fill(dst, dst + n, 0.0f);
  for (const auto& part : parts)
    for (index_t x = 0; x < n; ++x) dst[x] += part[x];
}

}  // namespace

void hlg_local_attention_forward(const HlgLocalShape& s, TokenTensor q, TokenTensor v, const float* bias, float* out,
                                 float* lse, int num_threads) {
  const index_t d = s.channels / s.heads, C = s.channels, N = s.height * s.width;
  const index_t units = s.batch * window_count(s) * s.heads;
  const WindowBias window_bias(bias, s.heads);
  const bool rows = value_rows(d);
#ifdef _OPENMP
#pragma omp parallel num_threads(thread_count(num_threads))
#endif
  {
    AttentionScratch w;
    std::vector<index_t> tokens, slots;
    std::vector<float> K(kArea * d), V(kArea * d), QT(d * kQueryBlock), O(kQueryBlock * d), block_lse(kQueryBlock);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
    for (index_t u = 0; u < units; ++u) {
      const index_t head = u % s.heads, window = (u / s.heads) % window_count(s), b = u / s.heads / window_count(s);
      window_tokens(s, window, tokens, slots);
      const index_t L = static_cast<index_t>(tokens.size()), c0 = head * d;
      gather(q, b, tokens, c0, d, K.data());  // the query is the key
      if (rows)
        gather(v, b, tokens, c0, d, V.data());
      else
        gather_columns(v, b, tokens.data(), L, L, c0, d, 1.0f, V.data(), L);
      for (index_t i0 = 0; i0 < L; i0 += kQueryBlock) {
        const index_t m = std::min(kQueryBlock, L - i0);
        gather_columns(q, b, tokens.data() + i0, m, kQueryBlock, c0, d, s.scale * kLog2e, QT.data(), kQueryBlock);
        auto add_bias = [&](float* ST, index_t j0, index_t n) { window_bias.add(ST, head, slots, i0, m, j0, n); };
        if (rows)
          attend_columns<true>(QT.data(), K.data(), d, V.data(), d, L, d, w, O.data(), block_lse.data(), add_bias);
        else
          attend_columns<false>(QT.data(), K.data(), d, V.data(), L, L, d, w, O.data(), block_lse.data(), add_bias);
        for (index_t i = 0; i < m; ++i) {
          const index_t t = tokens[i0 + i];
          float* dst = out + (b * N + t) * C + c0;
          if (rows)
            copy_row(O.data() + i * d, d, dst);
          else
            for (index_t c = 0; c < d; ++c) dst[c] = O[c * kQueryBlock + i];
          lse[(b * s.heads + head) * N + t] = block_lse[i];
        }
      }
    }
  }
}

void hlg_local_attention_backward(const HlgLocalShape& s, TokenTensor q, TokenTensor v, TokenTensor out,
                                  const float* lse, TokenTensor grad_out, const float* bias, float* grad_q,
                                  float* grad_v, float* grad_bias, int num_threads) {
  const index_t d = s.channels / s.heads, C = s.channels, N = s.height * s.width;
  const index_t units = s.batch * window_count(s) * s.heads, table_size = s.heads * kArea * kArea;
  const WindowBias window_bias(bias, s.heads);
  const int threads = thread_count(num_threads);
  std::vector<std::vector<float>> grad_bias_parts(static_cast<size_t>(threads));
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    std::vector<float>& my_grad_bias = grad_bias_parts[static_cast<size_t>(thread_index())];
    my_grad_bias.assign(table_size, 0.0f);
    AttentionScratch w;
    std::vector<index_t> tokens, slots;
    // Row buffers padded with zero rows to whole query blocks (see attend_columns_backward).
    const index_t padded = ceil_div(kArea, kQueryBlock) * kQueryBlock;
    std::vector<float> Q(padded * d), dO(padded * d), O(padded * d), K(kArea * d), V(kArea * d), dK(kArea * d),
        dV(kArea * d), D(padded), row_lse(padded), QT(d * kQueryBlock), dOT(d * kQueryBlock),
        dQT(d * kQueryBlock), dQ(kQueryBlock * d);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t u = 0; u < units; ++u) {
      const index_t head = u % s.heads, window = (u / s.heads) % window_count(s), b = u / s.heads / window_count(s);
      window_tokens(s, window, tokens, slots);
      const index_t L = static_cast<index_t>(tokens.size()), c0 = head * d;
      float* table_grad = my_grad_bias.data() + head * kArea * kArea;
      for (auto* buf : {&Q, &dO, &O}) std::fill(buf->begin(), buf->end(), 0.0f);
      for (auto* buf : {&D, &row_lse}) std::fill(buf->begin(), buf->end(), 0.0f);
      std::fill(dK.begin(), dK.end(), 0.0f);
      std::fill(dV.begin(), dV.end(), 0.0f);
      gather(q, b, tokens, c0, d, K.data());
      gather(q, b, tokens, c0, d, Q.data());
      for (index_t x = 0; x < L * d; ++x) Q[x] *= s.scale;
      gather(v, b, tokens, c0, d, V.data());
      gather(out, b, tokens, c0, d, O.data());
      gather(grad_out, b, tokens, c0, d, dO.data());
      row_dots(dO.data(), O.data(), L, d, D.data());
      for (index_t i = 0; i < L; ++i) row_lse[i] = lse[(b * s.heads + head) * N + tokens[i]];
      for (index_t i0 = 0; i0 < L; i0 += kQueryBlock) {
        const index_t m = std::min(kQueryBlock, L - i0);
        gather_columns(q, b, tokens.data() + i0, m, kQueryBlock, c0, d, s.scale * kLog2e, QT.data(), kQueryBlock);
        transpose(kQueryBlock, d, dO.data() + i0 * d, d, dOT.data(), kQueryBlock);
        std::fill(dQT.begin(), dQT.end(), 0.0f);
        auto add_bias = [&](float* PT, index_t j0, index_t n) { window_bias.add(PT, head, slots, i0, m, j0, n); };
        auto collect = [&](const float* dST, index_t j0, index_t n) {
          for (index_t r = 0; r < n; ++r)
            for (index_t i = 0; i < m; ++i) table_grad[slots[i0 + i] * kArea + slots[j0 + r]] += dST[r * kQueryBlock + i];
        };
        attend_columns_backward(QT.data(), Q.data() + i0 * d, dOT.data(), dO.data() + i0 * d, row_lse.data() + i0,
                                D.data() + i0, K.data(), V.data(), L, d, w, dQT.data(), dK.data(), dV.data(),
                                add_bias, collect);
        transpose(d, kQueryBlock, dQT.data(), kQueryBlock, dQ.data(), d, s.scale);
        for (index_t i = 0; i < m; ++i)  // as a query, then as a key (dK's rows are the same tokens)
          for (index_t c = 0; c < d; ++c) dK[(i0 + i) * d + c] += dQ[i * d + c];
      }
      for (index_t i = 0; i < L; ++i) {
        const index_t row = (b * N + tokens[i]) * C + c0;
        write_row(dK.data() + i * d, d, grad_q + row);
        write_row(dV.data() + i * d, d, grad_v + row);
      }
    }
    stores_done();
  }
  sum_threads(grad_bias_parts, table_size, grad_bias);
}

namespace {

// Where the bias of query t and key m lies in one head's table: at query_base(t) - key_offset(m).
struct GlobalBias {
  const float* table;  // one head's table, base 2
  index_t width, grid_height, grid_width;
  index_t row_stride() const { return 2 * grid_width - 1; }
  index_t query_base(index_t t) const {
    return (t / width + grid_height - 1) * row_stride() + t % width + grid_width - 1;
  }
  index_t key_offset(index_t key) const { return key / grid_width * row_stride() + key % grid_width; }
  // S^T (n keys from j0 x kQueryBlock) += the bias of the m queries whose query_base values are given.
  // Queries of one image row have consecutive bases: each such run is a contiguous stretch of every key's
  // table row, added as vectors (against one gathered element at a time: hlg_small's stage-1 forward at 512,
  // 19.5 -> 15.8 ms).
  void add(float* ST, const index_t* bases, index_t m, index_t j0, index_t n) const {
    index_t run_start[kQueryBlock], run_length[kQueryBlock], runs = 0;
    for (index_t i = 0; i < m; ++i) {
      if (i > 0 && bases[i] == bases[i - 1] + 1) {
        ++run_length[runs - 1];
      } else {
        run_start[runs] = i;
        run_length[runs++] = 1;
      }
    }
    for (index_t r = 0; r < n; ++r) {
      const float* row = table - key_offset(j0 + r);
      for (index_t run = 0; run < runs; ++run) {
        float* __restrict__ dst = ST + r * kQueryBlock + run_start[run];
        const float* __restrict__ src = row + bases[run_start[run]];
        for (index_t x = 0; x < run_length[run]; ++x) dst[x] += src[x];
      }
    }
  }
  // The gradient of that bias: dS^T summed into a table of the same layout.
  void collect(const float* dST, const index_t* bases, index_t m, index_t j0, index_t n, float* grad) const {
    for (index_t r = 0; r < n; ++r) {
      float* row = grad - key_offset(j0 + r);
      for (index_t i = 0; i < m; ++i) row[bases[i]] += dST[r * kQueryBlock + i];
    }
  }
};

}  // namespace

void hlg_global_attention_forward(const HlgGlobalShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                  const float* table, float* out, float* lse, int num_threads) {
  const index_t d = s.channels / s.heads, C = s.channels, N = s.height * s.width, M = s.keys;
  const index_t offsets = s.table_size;
  const index_t chunks = ceil_div(N, kGlobalChunk), units = s.batch * s.heads * chunks;
  std::vector<float> table2(table, table + s.heads * offsets);
  for (float& x : table2) x *= kLog2e;
  const bool rows = value_rows(d);
  std::vector<index_t> keys(static_cast<size_t>(M));
  for (index_t j = 0; j < M; ++j) keys[static_cast<size_t>(j)] = j;
#ifdef _OPENMP
#pragma omp parallel num_threads(thread_count(num_threads))
#endif
  {
    AttentionScratch w;
    std::vector<index_t> queries(kQueryBlock), query_base(kQueryBlock);
    std::vector<float> K(M * d), V(M * d), QT(d * kQueryBlock), O(kQueryBlock * d), block_lse(kQueryBlock);
    index_t loaded = -1;  // the (batch, head) whose keys and values K, V hold
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t u = 0; u < units; ++u) {
      const index_t chunk = u % chunks, head = (u / chunks) % s.heads, b = u / chunks / s.heads, c0 = head * d;
      if (loaded != b * s.heads + head) {
        gather(k, b, keys, c0, d, K.data());
        if (rows)
          gather(v, b, keys, c0, d, V.data());
        else
          gather_columns(v, b, keys.data(), M, M, c0, d, 1.0f, V.data(), M);
        loaded = b * s.heads + head;
      }
      GlobalBias bias{table2.data() + head * offsets, s.width, s.grid_height, s.grid_width};
      for (index_t t0 = chunk * kGlobalChunk; t0 < std::min(N, (chunk + 1) * kGlobalChunk); t0 += kQueryBlock) {
        const index_t m = std::min(kQueryBlock, N - t0);
        for (index_t i = 0; i < m; ++i) queries[static_cast<size_t>(i)] = t0 + i;
        gather_columns(q, b, queries.data(), m, kQueryBlock, c0, d, s.scale * kLog2e, QT.data(), kQueryBlock);
        for (index_t i = 0; i < m; ++i) query_base[i] = bias.query_base(t0 + i);
        auto add_bias = [&](float* ST, index_t j0, index_t n) { bias.add(ST, query_base.data(), m, j0, n); };
        if (rows)
          attend_columns<true>(QT.data(), K.data(), d, V.data(), d, M, d, w, O.data(), block_lse.data(), add_bias);
        else
          attend_columns<false>(QT.data(), K.data(), d, V.data(), M, M, d, w, O.data(), block_lse.data(), add_bias);
        for (index_t i = 0; i < m; ++i) {
          float* dst = out + (b * N + t0 + i) * C + c0;
          if (rows)
            copy_row(O.data() + i * d, d, dst);
          else
            for (index_t c = 0; c < d; ++c) dst[c] = O[c * kQueryBlock + i];
          lse[(b * s.heads + head) * N + t0 + i] = block_lse[i];
        }
      }
    }
  }
}

void hlg_global_attention_backward(const HlgGlobalShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                   TokenTensor out, const float* lse, TokenTensor grad_out, const float* table,
                                   float* grad_q, float* grad_k, float* grad_v, float* grad_table, int num_threads) {
  const index_t d = s.channels / s.heads, C = s.channels, N = s.height * s.width, M = s.keys;
  const index_t offsets = s.table_size;
  const index_t chunks = ceil_div(N, kGlobalChunk), units = s.batch * s.heads * chunks;
  std::vector<float> table2(table, table + s.heads * offsets);
  for (float& x : table2) x *= kLog2e;
  const int threads = thread_count(num_threads);
  const index_t kv_size = s.batch * M * C;
  std::vector<std::vector<float>> grad_k_parts(threads), grad_v_parts(threads), grad_table_parts(threads);
  std::vector<index_t> keys(static_cast<size_t>(M));
  for (index_t j = 0; j < M; ++j) keys[static_cast<size_t>(j)] = j;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    const size_t me = static_cast<size_t>(thread_index());
    grad_k_parts[me].assign(kv_size, 0.0f);
    grad_v_parts[me].assign(kv_size, 0.0f);
    grad_table_parts[me].assign(s.heads * offsets, 0.0f);
    AttentionScratch w;
    std::vector<index_t> queries(kQueryBlock), query_base(kQueryBlock);
    std::vector<float> K(M * d), V(M * d), dK(M * d), dV(M * d), Q(kQueryBlock * d), dO(kQueryBlock * d),
        O(kQueryBlock * d), D(kQueryBlock), row_lse(kQueryBlock), QT(d * kQueryBlock), dOT(d * kQueryBlock),
        dQT(d * kQueryBlock), dQ(kQueryBlock * d);
    index_t loaded = -1;  // the (batch, head) whose keys and values K, V hold
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t u = 0; u < units; ++u) {
      const index_t chunk = u % chunks, head = (u / chunks) % s.heads, b = u / chunks / s.heads, c0 = head * d;
      if (loaded != b * s.heads + head) {
        gather(k, b, keys, c0, d, K.data());
        gather(v, b, keys, c0, d, V.data());
        loaded = b * s.heads + head;
      }
      std::fill(dK.begin(), dK.end(), 0.0f);
      std::fill(dV.begin(), dV.end(), 0.0f);
      GlobalBias bias{table2.data() + head * offsets, s.width, s.grid_height, s.grid_width};
      float* table_grad = grad_table_parts[me].data() + head * offsets;
      for (index_t t0 = chunk * kGlobalChunk; t0 < std::min(N, (chunk + 1) * kGlobalChunk); t0 += kQueryBlock) {
        const index_t m = std::min(kQueryBlock, N - t0);
        queries.resize(static_cast<size_t>(m));
        for (index_t i = 0; i < m; ++i) queries[static_cast<size_t>(i)] = t0 + i;
        std::fill(Q.begin(), Q.end(), 0.0f);
        std::fill(dO.begin(), dO.end(), 0.0f);
        std::fill(O.begin(), O.end(), 0.0f);
        std::fill(D.begin(), D.end(), 0.0f);
        std::fill(row_lse.begin(), row_lse.end(), 0.0f);
        gather(q, b, queries, c0, d, Q.data());
        for (index_t x = 0; x < m * d; ++x) Q[x] *= s.scale;
        gather(out, b, queries, c0, d, O.data());
        gather(grad_out, b, queries, c0, d, dO.data());
        row_dots(dO.data(), O.data(), m, d, D.data());
        for (index_t i = 0; i < m; ++i) row_lse[i] = lse[(b * s.heads + head) * N + t0 + i];
        gather_columns(q, b, queries.data(), m, kQueryBlock, c0, d, s.scale * kLog2e, QT.data(), kQueryBlock);
        transpose(kQueryBlock, d, dO.data(), d, dOT.data(), kQueryBlock);
        std::fill(dQT.begin(), dQT.end(), 0.0f);
        for (index_t i = 0; i < m; ++i) query_base[i] = bias.query_base(t0 + i);
        auto add_bias = [&](float* PT, index_t j0, index_t n) { bias.add(PT, query_base.data(), m, j0, n); };
        auto collect = [&](const float* dST, index_t j0, index_t n) {
          bias.collect(dST, query_base.data(), m, j0, n, table_grad);
        };
        attend_columns_backward(QT.data(), Q.data(), dOT.data(), dO.data(), row_lse.data(), D.data(), K.data(),
                                V.data(), M, d, w, dQT.data(), dK.data(), dV.data(), add_bias, collect);
        transpose(d, kQueryBlock, dQT.data(), kQueryBlock, dQ.data(), d, s.scale);
        for (index_t i = 0; i < m; ++i) write_row(dQ.data() + i * d, d, grad_q + (b * N + t0 + i) * C + c0);
      }
      for (index_t j = 0; j < M; ++j)
        for (index_t c = 0; c < d; ++c) {
          grad_k_parts[me][(b * M + j) * C + c0 + c] += dK[j * d + c];
          grad_v_parts[me][(b * M + j) * C + c0 + c] += dV[j * d + c];
        }
    }
    stores_done();
  }
  sum_threads(grad_k_parts, kv_size, grad_k);
  sum_threads(grad_v_parts, kv_size, grad_v);
  sum_threads(grad_table_parts, s.heads * offsets, grad_table);
}

}  // namespace hrvit
