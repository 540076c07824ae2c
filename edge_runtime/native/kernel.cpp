// edgeamp's native CPU engine: the recurrent and WaveNet families as plain C++ kernels.
//
// One hop of audio in, one hop out, state kept here from hop to hop. Everything is allocated
// when the model is built (ea_* calls below); ea_run allocates nothing, takes no lock and makes
// no system call: a real-time audio thread may call it. Called through ctypes (a C ABI, no Python
// headers): Python holds the GIL released while a hop runs, so streams on other threads run at once.
//
// Numerics are the numpy reference's (core/reference.py, core/wavenet.py) in float32, with
// vectorisable tanh/sigmoid/exp accurate to a few float32 ulps (not the coarse "fast tanh" of some
// players). SIMD is GCC/Clang vector extensions as wide as -march's registers (16 floats with
// AVX-512, 8 with AVX2, 4 with SSE or NEON), so the one source builds for whichever CPU it is installed on.
//
// Layouts:
//   recurrent signals between layers are time-major (T x width);
//   LSTM/GRU gate blocks are each padded to a whole number of vectors (zero weights), so every
//   activation runs on whole vectors; pads stay exactly zero in h and c;
//   WaveNet signals are channel-major (C x time), each layer's input row holding its history
//   first, so a dilated tap is a pointer offset and every product runs over 16 time steps at once.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>
#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define EA_BF16 1
#endif

namespace {

// one vector as wide as the target's registers (wider generic vectors are split through memory)
#if defined(__AVX512F__)
constexpr int W = 16;
#elif defined(__AVX__)
constexpr int W = 8;
#else
constexpr int W = 4;
#endif
typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));

// every float buffer starts on a cache line: a vector load from a 16-byte-aligned heap block crosses
// two lines, and whether malloc happened to give 64-byte alignment made the same LSTM 32 hop take
// 0.068 or 0.088 ms from one process to the next (Xeon, AVX-512)
template <typename T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <typename U> CacheAligned(const CacheAligned<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <typename U> bool operator==(const CacheAligned<U>&) const { return true; }
  template <typename U> bool operator!=(const CacheAligned<U>&) const { return false; }
};
typedef std::vector<float, CacheAligned<float>> fvec;

inline vf load(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf splat(float x) { return vf{} + x; }
inline int round_up(int n, int m) { return (n + m - 1) / m * m; }

// exp(x) for float32: Cephes' range reduction and polynomial (relative error about 2e-7),
// clamped so that large negative x give 0 and large positive x give a finite huge number
inline vf vexp(vf x) {
  x = x < splat(88.3762626647949f) ? x : splat(88.3762626647949f);
  x = x > splat(-87.3365447505531f) ? x : splat(-87.3365447505531f);
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (its low mantissa bits are n), x - n ln 2 in two parts
  const float shifter = 12582912.0f;
  vf t = x * 1.44269504088896341f + shifter;
  vi t_bits;
  std::memcpy(&t_bits, &t, sizeof t_bits);
  vf fx = t - shifter;
  x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  vf z = x * x;
  vf y = splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  vi bits = (t_bits - 0x4B400000 + 127) << 23;  // 0x4B400000: the shifter's bits
  vf pow2;
  std::memcpy(&pow2, &bits, sizeof pow2);
  return y * pow2;
}

// tanh(x) as a 13/6-degree rational function of x (Eigen's generic_fast_tanh_float, accurate to a
// couple of ulp on [-9, 9], where float32 tanh is +/-1 outside): multiply-adds and one division, no
// exp. An LSTM step is its matvec and five of these per vector of units; against the exp form
// (Cephes' exp, then (1 - e) / (1 + e)) this took an LSTM 24 hop from 0.090 to 0.080 ms (the kernel
// alone, best of five runs on this 2-core EPYC). Sharing one division among an LSTM's four gates
// (products of the denominators) measured slower: the multiplies cost more than the divisions saved.
inline vf vtanh(vf x) {
  x = x < splat(9.0f) ? x : splat(9.0f);
  x = x > splat(-9.0f) ? x : splat(-9.0f);
  vf x2 = x * x;
  vf p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  vf q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p * x / q;
}

// sigmoid(x) = (1 + tanh(x / 2)) / 2, the form edgeamp's reference computes (no exp either)
inline vf vsigmoid(vf x) { return 0.5f + 0.5f * vtanh(0.5f * x); }

enum Act { LINEAR = 0, TANH, RELU, SIGMOID, ELU, SOFTMAX, PRELU, HARDTANH, LEAKYRELU, SILU, SOFTSIGN, HARDSWISH,
           HARDSIGMOID, N_ACT };

inline vf activate(int act, vf x) {
  switch (act) {
    case TANH: return vtanh(x);
    case RELU: return x > splat(0.0f) ? x : splat(0.0f);
    case SIGMOID: return vsigmoid(x);
    case ELU: return x > splat(0.0f) ? x : vexp(x) - 1.0f;
    case HARDTANH: { vf y = x < splat(1.0f) ? x : splat(1.0f); return y > splat(-1.0f) ? y : splat(-1.0f); }
    case LEAKYRELU: return x >= splat(0.0f) ? x : x * 0.01f;
    case SILU: return x * vsigmoid(x);
    case SOFTSIGN: {
      vi bits; std::memcpy(&bits, &x, sizeof bits); bits &= 0x7fffffff;
      vf a; std::memcpy(&a, &bits, sizeof a);
      return x / (1.0f + a);
    }
    case HARDSWISH: case HARDSIGMOID: {
      vf y = x + 3.0f;
      y = y > splat(0.0f) ? y : splat(0.0f);
      y = y < splat(6.0f) ? y : splat(6.0f);
      return act == HARDSWISH ? x * y / 6.0f : y / 6.0f;
    }
    default: return x;
  }
}

// n values of p through an activation (n a multiple of W: buffers are padded)
void activate_all(int act, float* p, int n) {
  if (act == LINEAR) return;
  for (int i = 0; i < n; i += W) store(p + i, activate(act, load(p + i)));
}

struct Op {
  int n_in = 0, n_out = 0;
  virtual ~Op() = default;
  // in: T x n_in time-major (rows of stride n_in); out: T x n_out
  virtual void run(const float* in, float* out, int T) = 0;
  virtual void reset() = 0;
};

// ---- recurrent family ------------------------------------------------------------------------

// z[0:NB*W] += sum_k h[k] * rows[k][0:NB*W], rows `stride` apart; z kept in registers (up to
// DUAL_SUMS vectors, two sets of sums over even and odd k: a recurrent step waits on this chain).
// Dual sums for 8 vectors measured slower on both CPUs tried: LSTM 32 0.066 -> 0.101 ms a hop on a
// Xeon (AVX-512, the kernel alone), slower too on a Zen 4 EPYC, whose zmm FMAs are double-pumped.
constexpr int DUAL_SUMS = 4;
template <int NB>
inline void matvec_block(const float* h, int K, const float* rows, int stride, float* z) {
  vf acc[NB], odd[NB];
#pragma GCC unroll 16
  for (int b = 0; b < NB; ++b) { acc[b] = load(z + b * W); odd[b] = splat(0.0f); }
  int k = 0;
  if (NB <= DUAL_SUMS) {
    for (; k + 2 <= K; k += 2) {
      vf h0 = splat(h[k]), h1 = splat(h[k + 1]);
      const float* r0 = rows + (size_t)k * stride;
      const float* r1 = r0 + stride;
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) { acc[b] += h0 * load(r0 + b * W); odd[b] += h1 * load(r1 + b * W); }
    }
  }
  for (; k < K; ++k) {
    vf hk = splat(h[k]);
    const float* r = rows + (size_t)k * stride;
#pragma GCC unroll 16
    for (int b = 0; b < NB; ++b) acc[b] += hk * load(r + b * W);
  }
#pragma GCC unroll 16
  for (int b = 0; b < NB; ++b) store(z + b * W, acc[b] + odd[b]);
}

// f(std::integral_constant<int, NB>, col) over columns 0..n in blocks of up to 8 vectors of `width`
template <int width, typename F>
inline void over_blocks(int n, F&& f) {
  int col = 0;
  for (; col + 8 * width <= n; col += 8 * width) f(std::integral_constant<int, 8>{}, col);
  switch ((n - col) / width) {
    case 7: f(std::integral_constant<int, 7>{}, col); break;
    case 6: f(std::integral_constant<int, 6>{}, col); break;
    case 5: f(std::integral_constant<int, 5>{}, col); break;
    case 4: f(std::integral_constant<int, 4>{}, col); break;
    case 3: f(std::integral_constant<int, 3>{}, col); break;
    case 2: f(std::integral_constant<int, 2>{}, col); break;
    case 1: f(std::integral_constant<int, 1>{}, col); break;
    default: break;
  }
}

// z[0:n] += h[0:K] @ M (K x stride), n a multiple of W, in blocks of up to 8 vectors
void matvec(const float* h, int K, const float* M, int stride, int n, float* z) {
  over_blocks<W>(n, [&](auto nb, int col) { matvec_block<decltype(nb)::value>(h, K, M + col, stride, z + col); });
}

// ---- bf16 recurrent products (CPUs with AVX512_BF16) --------------------------------------------
// A recurrent step waits on its matvec; with AVX512_BF16 one VDPBF16PS multiplies two rows of bf16
// weights by two bf16 inputs and adds both products to float32 sums: half as many instructions.
// Weights and the step's input are rounded to bf16 (8 bits of mantissa), sums stay float32 (ESR
// against the float64 reference 6e-9 on a random-weight LSTM 64 + dense; a trained model can be more
// sensitive: edgeamp bench states it per model).
// Layout: row pair k of a (K x n) matrix as n 32-bit words, word j = bf16(M[2k][j]) | bf16(M[2k+1][j]) << 16.
//
// It pays only where the float32 matrix crowds the L1 cache: on the Xeon measured, half as many
// VDPBF16PS as FMAs made a small layer's step no shorter, and converting the step's input to bf16
// lengthens the chain. Measured there (kernel alone, best of five): the seed's 64-unit
// layers (66 and 64 KB of float32 weights) 0.77 -> 0.62 ms a hop; LSTM 12/24/32 and GRU 12 (4-17 KB)
// 1.2-1.3x slower. So a layer whose step matrix is under BF16_MIN_BYTES stays float32 when bf16 is asked.
typedef std::vector<uint32_t, CacheAligned<uint32_t>> uvec;
constexpr size_t BF16_MIN_BYTES = 32 * 1024;

inline uint32_t to_bf16(float x) {  // round to nearest even (weights are finite: checked on import)
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

uvec pack_pairs(const float* M, int K, int n) {
  const int K2 = (K + 1) / 2;
  uvec out((size_t)K2 * n, 0u);
  for (int k = 0; k < K; ++k)
    for (int j = 0; j < n; ++j) out[(size_t)(k / 2) * n + j] |= to_bf16(M[(size_t)k * n + j]) << (16 * (k & 1));
  return out;
}

#ifdef EA_BF16
// pairs[0:K2] from x[0:2*K2] (x padded with zeros to a multiple of 32 floats)
inline void to_pairs(const float* x, int K2, uint32_t* pairs) {
  for (int i = 0; i < K2; i += 16) {
    __m512bh p = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 2 * i + 16), _mm512_loadu_ps(x + 2 * i));
    _mm512_storeu_si512(pairs + i, (__m512i)p);
  }
}

template <int NB>
inline void matvec_bf16_block(const uint32_t* hp, int K2, const uint32_t* rows, int stride, float* z) {
  __m512 acc[NB], odd[NB];
#pragma GCC unroll 16
  for (int b = 0; b < NB; ++b) { acc[b] = _mm512_loadu_ps(z + b * 16); odd[b] = _mm512_setzero_ps(); }
  int k = 0;
  if (NB <= DUAL_SUMS) {
    for (; k + 2 <= K2; k += 2) {
      __m512bh h0 = (__m512bh)_mm512_set1_epi32((int)hp[k]), h1 = (__m512bh)_mm512_set1_epi32((int)hp[k + 1]);
      const uint32_t* r0 = rows + (size_t)k * stride;
      const uint32_t* r1 = r0 + stride;
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) {
        acc[b] = _mm512_dpbf16_ps(acc[b], h0, (__m512bh)_mm512_loadu_si512(r0 + b * 16));
        odd[b] = _mm512_dpbf16_ps(odd[b], h1, (__m512bh)_mm512_loadu_si512(r1 + b * 16));
      }
    }
  }
  for (; k < K2; ++k) {
    __m512bh hk = (__m512bh)_mm512_set1_epi32((int)hp[k]);
    const uint32_t* r = rows + (size_t)k * stride;
#pragma GCC unroll 16
    for (int b = 0; b < NB; ++b) acc[b] = _mm512_dpbf16_ps(acc[b], hk, (__m512bh)_mm512_loadu_si512(r + b * 16));
  }
#pragma GCC unroll 16
  for (int b = 0; b < NB; ++b) _mm512_storeu_ps(z + b * 16, _mm512_add_ps(acc[b], odd[b]));
}

// z[0:n] += pairs (K2 words) @ M (K2 x n words), n a multiple of 16
void matvec_bf16(const uint32_t* hp, int K2, const uint32_t* M, int n, float* z) {
  over_blocks<16>(n, [&](auto nb, int col) { matvec_bf16_block<decltype(nb)::value>(hp, K2, M + col, n, z + col); });
}
#endif

// out[t][0:NB*W] += X[t] @ M for RT rows of X at once (each M row loaded once for RT rows)
template <int RT, int NB>
inline void gemm_tile(const float* X, int ldx, int K, const float* M, int stride, float* out, int ldo) {
  vf acc[RT][NB];
#pragma GCC unroll 4
  for (int r = 0; r < RT; ++r)
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) acc[r][b] = load(out + (size_t)r * ldo + b * W);
  for (int k = 0; k < K; ++k) {
    vf m[NB];
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) m[b] = load(M + (size_t)k * stride + b * W);
#pragma GCC unroll 4
    for (int r = 0; r < RT; ++r) {
      vf x = splat(X[(size_t)r * ldx + k]);
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) acc[r][b] += x * m[b];
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < RT; ++r)
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) store(out + (size_t)r * ldo + b * W, acc[r][b]);
}

template <int RT>
void gemm_cols(const float* X, int ldx, int K, const float* M, int n, float* out) {
  int col = 0;
  for (; col + 4 * W <= n; col += 4 * W) gemm_tile<RT, 4>(X, ldx, K, M + col, n, out + col, n);
  switch ((n - col) / W) {
    case 3: gemm_tile<RT, 3>(X, ldx, K, M + col, n, out + col, n); break;
    case 2: gemm_tile<RT, 2>(X, ldx, K, M + col, n, out + col, n); break;
    case 1: gemm_tile<RT, 1>(X, ldx, K, M + col, n, out + col, n); break;
    default: break;
  }
}

// out (T x n) += X (T x K, rows ldx apart) @ M (K x n), n a multiple of W
void gemm(const float* X, int T, int ldx, int K, const float* M, int n, float* out) {
  int t = 0;
  for (; t + 4 <= T; t += 4) gemm_cols<4>(X + (size_t)t * ldx, ldx, K, M, n, out + (size_t)t * n);
  for (; t < T; ++t) gemm_cols<1>(X + (size_t)t * ldx, ldx, K, M, n, out + (size_t)t * n);
}

// a (rows x cols) matrix in, its gate blocks (`gates` of `units` columns each) spread to `up` columns
fvec pad_gates(const float* m, int rows, int gates, int units, int up) {
  fvec out((size_t)rows * gates * up, 0.0f);
  for (int r = 0; r < rows; ++r)
    for (int g = 0; g < gates; ++g)
      std::memcpy(&out[(size_t)r * gates * up + g * up], m + (size_t)r * gates * units + g * units, units * sizeof(float));
  return out;
}

// a (rows x cols) matrix in, each row `stride` floats out (the columns past cols zero)
fvec pack_rows(const float* m, int rows, int cols, int stride) {
  fvec out((size_t)rows * stride, 0.0f);
  for (int r = 0; r < rows; ++r) std::memcpy(&out[(size_t)r * stride], m + (size_t)r * cols, cols * sizeof(float));
  return out;
}

// an LSTM or GRU layer (Keras layout: gate blocks of U units side by side, the row padded to a
// whole vector only at its end, so that a 24-unit LSTM's 96 gate values are 6 AVX-512 vectors, not
// 8 with each gate padded). A narrow input (the audio and knobs) joins the recurrent product: one
// matvec over [x_t, h] per step. A wide one (a layer below) is projected for the whole hop first,
// as a matrix product that loads each weight row once for four steps. The activations read each
// gate at its offset (g * U + u, unaligned); lanes past U read the next gate's values, and the
// state they write (h, c past U) is cleared after each step.
constexpr int FUSED_INPUTS = 8;

struct Recurrent : Op {
  bool lstm, fused, gru_fused;
  int U, Up, G, n;                      // units, units rounded up to a vector, gates, G * U rounded up
  fvec Wx, Wh, b, b_rec;  // Wx (n_in x n) (fused: [Wx; Wh] ((n_in + U) x n)); GRU recurrent bias
  fvec v, c, h0, c0, zx, zh;  // v: [x_t, h] (h at v + n_in, Up long)
  // bf16: the step's product (fused: [x_t, h] @ Wx; else h @ Wh) as bf16 pairs; K2 pairs of inputs
  bool bf16;
  int K2 = 0;
  uvec Wp, hp;

  Recurrent(bool is_lstm, int n_in_, int units, const float* kernel, const float* recurrent, const float* bias,
            const float* h_init, const float* c_init, int T, bool use_bf16)
      : lstm(is_lstm), U(units), Up(round_up(units, W)), G(is_lstm ? 4 : 3), bf16(use_bf16) {
    n_in = n_in_;
    n_out = units;
    fused = n_in <= FUSED_INPUTS;
    // a fused GRU keeps its candidate's input and recurrent parts in blocks of their own (the reset
    // gate multiplies the recurrent part only): columns z, r, n_x, n_h, one matvec over [x_t, h]
    // (GRU 12: 4 x 12 columns are the 3 vectors 3 x 12 took padded; 0.041 -> 0.038 ms a hop)
    gru_fused = !lstm && fused;
    n = round_up((gru_fused ? 4 : G) * U, W);
    if (gru_fused) {
      const int G3 = 3 * U;
      Wx.assign((size_t)(n_in + U) * n, 0.0f);
      for (int r = 0; r < n_in; ++r) std::memcpy(&Wx[(size_t)r * n], kernel + (size_t)r * G3, G3 * sizeof(float));
      for (int r = 0; r < U; ++r) {  // h rows: z and r as they are, the candidate's part in the n_h block
        float* row = &Wx[(size_t)(n_in + r) * n];
        std::memcpy(row, recurrent + (size_t)r * G3, 2 * U * sizeof(float));
        std::memcpy(row + 3 * U, recurrent + (size_t)r * G3 + 2 * U, U * sizeof(float));
      }
      b.assign(n, 0.0f);
      for (int u = 0; u < 2 * U; ++u) b[u] = bias[u] + bias[G3 + u];  // z and r: both biases add
      for (int u = 0; u < U; ++u) { b[2 * U + u] = bias[2 * U + u]; b[3 * U + u] = bias[G3 + 2 * U + u]; }
    } else {
      Wx = pack_rows(kernel, n_in, G * U, n);
      Wh = pack_rows(recurrent, U, G * U, n);
      if (fused) Wx.insert(Wx.end(), Wh.begin(), Wh.end());
      b = pack_rows(bias, 1, G * U, n);
      b_rec = lstm ? fvec(n, 0.0f) : pack_rows(bias + G * U, 1, G * U, n);
    }
    // v: [x_t, h], then zeros: to_pairs reads whole 32-float groups past the K inputs (<= 31 more)
    v.assign(n_in + Up + 32, 0.0f); c.assign(Up, 0.0f); h0.assign(Up, 0.0f); c0.assign(Up, 0.0f);
    const int K = fused ? n_in + U : U;
    bf16 = bf16 && (size_t)K * n * sizeof(float) >= BF16_MIN_BYTES;
    if (bf16) {
      K2 = (K + 1) / 2;
      Wp = pack_pairs(fused ? Wx.data() : Wh.data(), K, n);
      hp.assign(round_up(K2, 16), 0u);
    }
    if (h_init) std::memcpy(h0.data(), h_init, U * sizeof(float));
    if (c_init) std::memcpy(c0.data(), c_init, U * sizeof(float));
    zx.assign((size_t)(fused ? 1 : T) * n + Up, 0.0f);  // + Up: the last gate's lanes past U read on
    zh.assign(n + Up, 0.0f);
    reset();
  }

  void reset() override {
    std::memcpy(&v[n_in], h0.data(), Up * sizeof(float));
    c = c0;
  }

  // z[0:n] += x[0:K] @ M, the product a step waits on (bf16 pairs where asked)
  void step_product(const float* x, int K, const float* M, float* z) {
#ifdef EA_BF16
    if (bf16) {
      to_pairs(x, K2, hp.data());
      matvec_bf16(hp.data(), K2, Wp.data(), n, z);
      return;
    }
#endif
    matvec(x, K, M, n, n, z);
  }

  void run(const float* in, float* out, int T) override {
    float* h = &v[n_in];
    if (!fused) {  // the input part of every step at once
      for (int t = 0; t < T; ++t) std::memcpy(&zx[(size_t)t * n], b.data(), n * sizeof(float));
      gemm(in, T, n_in, n_in, Wx.data(), n, zx.data());
    }
    for (int t = 0; t < T; ++t) {
      float* z = fused ? zx.data() : &zx[(size_t)t * n];
      if (fused) {
        std::memcpy(z, b.data(), n * sizeof(float));
        std::memcpy(v.data(), in + (size_t)t * n_in, n_in * sizeof(float));
        step_product(v.data(), n_in + U, Wx.data(), z);
      } else if (lstm) {
        step_product(h, U, Wh.data(), z);
      }
      if (gru_fused) {
        for (int u = 0; u < U; u += W) {
          vf zg = vsigmoid(load(z + u)), r = vsigmoid(load(z + U + u));
          vf cand = vtanh(load(z + 2 * U + u) + r * load(z + 3 * U + u));
          store(h + u, zg * load(h + u) + (1.0f - zg) * cand);
        }
        for (int u = U; u < Up; ++u) h[u] = 0.0f;
      } else if (lstm) {
        for (int u = 0; u < U; u += W) {
          vf i = vsigmoid(load(z + u)), f = vsigmoid(load(z + U + u));
          vf g = vtanh(load(z + 2 * U + u)), o = vsigmoid(load(z + 3 * U + u));
          vf cn = f * load(&c[u]) + i * g;
          store(&c[u], cn);
          store(h + u, o * vtanh(cn));
        }
        for (int u = U; u < Up; ++u) h[u] = c[u] = 0.0f;
      } else {
        std::memcpy(zh.data(), b_rec.data(), n * sizeof(float));
        step_product(h, U, Wh.data(), zh.data());
        for (int u = 0; u < U; u += W) {
          vf zg = vsigmoid(load(z + u) + load(&zh[u]));
          vf r = vsigmoid(load(z + U + u) + load(&zh[U + u]));
          vf cand = vtanh(load(z + 2 * U + u) + r * load(&zh[2 * U + u]));
          store(h + u, zg * load(h + u) + (1.0f - zg) * cand);
        }
        for (int u = U; u < Up; ++u) h[u] = 0.0f;
      }
      std::memcpy(out + (size_t)t * U, h, U * sizeof(float));
    }
  }
};

// a dense layer, or a causal dilated conv1d (kernel K x n_in x units), then an activation
struct Dense : Op {
  int K, dil, L, up, act;
  fvec w, bias, alpha, full, z;  // w: (K*n_in) x up; full: (L + T) x n_in
  int T_max;

  fvec bank;  // the FIR-bank form's outputs, unit-major: n_out x round_up(T, W)
  int Tp;

  Dense(int n_in_, int units, int ksize, int dilation, const float* kernel, const float* b, int activation,
        const float* prelu_alpha, int T)
      : K(ksize), dil(dilation), L(dilation * (ksize - 1)), up(round_up(units, W)), act(activation), T_max(T),
        Tp(round_up(T, W)) {
    n_in = n_in_;
    n_out = units;
    w = pad_gates(kernel, K * n_in, 1, units, up);
    bias = pad_gates(b, 1, 1, units, up);
    alpha.assign(up, 0.0f);
    if (prelu_alpha) std::memcpy(alpha.data(), prelu_alpha, units * sizeof(float));
    full.assign((size_t)(L + Tp) * n_in, 0.0f);  // Tp: the FIR-bank form reads whole vectors past T
    z.assign(up, 0.0f);
    if (fir_bank()) bank.assign((size_t)n_out * Tp, 0.0f);
  }

  // a conv1d on one input channel (a long FIR bank, e.g. SmartAmpPro's 120 taps into 4 channels):
  // vectorised along time, one unit at a time, instead of one padded matvec per tap and sample
  bool fir_bank() const { return K > 1 && n_in == 1; }

  void run_fir_bank(float* out, int T) {
    for (int u = 0; u < n_out; ++u) {
      float* o = &bank[(size_t)u * Tp];
      for (int t = 0; t < T; t += W) {
        vf acc = splat(bias[u]);
        for (int j = 0; j < K; ++j) acc += splat(w[(size_t)j * up + u]) * load(&full[t + (size_t)j * dil]);
        store(o + t, acc);
      }
    }
    for (int t = 0; t < T; ++t) {
      for (int u = 0; u < up; ++u) z[u] = u < n_out ? bank[(size_t)u * Tp + t] : 0.0f;
      finish(out + (size_t)t * n_out);
    }
  }

  // z (one sample's pre-activations) through the activation, into out
  void finish(float* out) {
    if (act == SOFTMAX) {
      float m = z[0], s = 0.0f;
      for (int u = 1; u < n_out; ++u) m = z[u] > m ? z[u] : m;
      for (int u = 0; u < n_out; ++u) { z[u] = std::exp(z[u] - m); s += z[u]; }
      for (int u = 0; u < n_out; ++u) z[u] /= s;
    } else if (act == PRELU) {
      for (int u = 0; u < up; u += W) {
        vf x = load(&z[u]);
        store(&z[u], x >= splat(0.0f) ? x : load(&alpha[u]) * x);
      }
    } else {
      activate_all(act, z.data(), up);
    }
    std::memcpy(out, z.data(), n_out * sizeof(float));
  }

  void reset() override { std::fill(full.begin(), full.end(), 0.0f); }

  void run(const float* in, float* out, int T) override {
    std::memcpy(&full[(size_t)L * n_in], in, (size_t)T * n_in * sizeof(float));
    if (fir_bank()) {
      run_fir_bank(out, T);
    } else {
      run_per_sample(out, T);
    }
    if (L) std::memmove(full.data(), &full[(size_t)T * n_in], (size_t)L * n_in * sizeof(float));
  }

  void run_per_sample(float* out, int T) {
    for (int t = 0; t < T; ++t) {
      if (n_out == 1 && act == LINEAR) {  // the head: a dot product
        float s = bias[0];
        for (int j = 0; j < K; ++j) {
          const float* x = &full[(size_t)(t + j * dil) * n_in];
          const float* wj = &w[(size_t)j * n_in * up];
          for (int i = 0; i < n_in; ++i) s += x[i] * wj[(size_t)i * up];
        }
        out[t] = s;
        continue;
      }
      std::memcpy(z.data(), bias.data(), up * sizeof(float));
      for (int j = 0; j < K; ++j)
        matvec(&full[(size_t)(t + j * dil) * n_in], n_in, &w[(size_t)j * n_in * up], up, up, z.data());
      finish(out + (size_t)t * n_out);
    }
  }
};

// out[t] = sum_k taps[k] in[t - k] on one channel
// (four vectors of time steps at once in registers, all taps over them: one load per multiply-add,
// where a pass over the hop per tap loaded and stored the output too: FIR 1024 0.07 -> 0.03 ms a hop)
struct Fir : Op {
  fvec taps, full, acc;
  int K, Tp;
  Fir(int k, const float* t, int T)
      : taps(t, t + k), full(k - 1 + round_up(T, 4 * W), 0.0f), acc(round_up(T, 4 * W), 0.0f), K(k),
        Tp(round_up(T, 4 * W)) { n_in = n_out = 1; }
  void reset() override { std::fill(full.begin(), full.end(), 0.0f); }
  void run(const float* in, float* out, int T) override {
    std::memcpy(&full[K - 1], in, T * sizeof(float));
    for (int t = 0; t < T; t += 4 * W) {
      vf a0 = splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
      const float* src = &full[K - 1 + t];
      for (int k = 0; k < K; ++k) {
        vf tk = splat(taps[k]);
        const float* s = src - k;
        a0 += tk * load(s);
        a1 += tk * load(s + W);
        a2 += tk * load(s + 2 * W);
        a3 += tk * load(s + 3 * W);
      }
      store(&acc[t], a0); store(&acc[t + W], a1); store(&acc[t + 2 * W], a2); store(&acc[t + 3 * W], a3);
    }
    std::memcpy(out, acc.data(), T * sizeof(float));
    std::memmove(full.data(), &full[T], (K - 1) * sizeof(float));
  }
};

// ---- WaveNet family (NAM's A1) ----------------------------------------------------------------

// out[o][t] (+)= bias[o] + sum_r w[o][r] * rows[r][t], o < O, t < Tp (a multiple of 2W), rows
// given as pointers (a dilated tap is a row pointer into a history); 4 outputs x 32 steps at a time
template <int OB>
inline void mm_block(const float* w, int R, const float* const* rows, float* out, int ldo, int Tp,
                     const float* bias, bool accumulate) {
  for (int t = 0; t < Tp; t += 2 * W) {
    vf a0[OB], a1[OB];
#pragma GCC unroll 4
    for (int o = 0; o < OB; ++o) {
      vf init = splat(bias ? bias[o] : 0.0f);
      a0[o] = accumulate ? load(out + (size_t)o * ldo + t) + init : init;
      a1[o] = accumulate ? load(out + (size_t)o * ldo + t + W) + init : init;
    }
    for (int r = 0; r < R; ++r) {
      vf x0 = load(rows[r] + t), x1 = load(rows[r] + t + W);
#pragma GCC unroll 4
      for (int o = 0; o < OB; ++o) {
        vf wo = splat(w[(size_t)o * R + r]);
        a0[o] += wo * x0;
        a1[o] += wo * x1;
      }
    }
#pragma GCC unroll 4
    for (int o = 0; o < OB; ++o) {
      store(out + (size_t)o * ldo + t, a0[o]);
      store(out + (size_t)o * ldo + t + W, a1[o]);
    }
  }
}

void mm(const float* w, int O, int R, const float* const* rows, float* out, int ldo, int Tp, const float* bias,
        bool accumulate) {
  int o = 0;
  for (; o + 4 <= O; o += 4)
    mm_block<4>(w + (size_t)o * R, R, rows, out + (size_t)o * ldo, ldo, Tp, bias ? bias + o : nullptr, accumulate);
  for (; o < O; ++o)
    mm_block<1>(w + (size_t)o * R, R, rows, out + (size_t)o * ldo, ldo, Tp, bias ? bias + o : nullptr, accumulate);
}

struct WaveLayer {
  int d, L;                    // dilation, history length (d * (K - 1))
  fvec conv_w;   // mid x (C*K + 1): NAM's (mid, C, K) flattened, then the mixer column
  fvec conv_b, out_w, out_b, h0;  // out_w: C x C (out, in); h0: C x L
  fvec xin;      // C rows of (L + Tp): history, then this hop's input
  std::vector<const float*> conv_rows, out_rows;
};

struct WaveArray {
  int in, C, head, K, act;
  bool gated, head_bias;
  fvec rechannel, head_w, head_b;  // C x in, head x C
  std::vector<WaveLayer> layers;
  std::vector<const float*> rechannel_rows, head_rows;
};

struct WaveNet : Op {
  int Tp, stride;  // padded hop; row length of the working buffers
  std::vector<WaveArray> arrays;
  float head_scale = 1.0f;
  fvec cond, yin, z, pre, post, headsum, headout;  // rows of `stride` floats
  bool finalized = false;

  explicit WaveNet(int T) : Tp(round_up(T, 2 * W)), stride(round_up(T, 2 * W)) { n_in = n_out = 1; }

  int max_channels() const {
    int m = 1;
    for (auto& a : arrays) m = std::max({m, a.C, a.head, a.in, a.gated ? 2 * a.C : a.C});
    return m;
  }

  void finalize() {
    int m = max_channels();
    cond.assign(stride, 0.0f);
    yin.assign((size_t)m * stride, 0.0f);
    z.assign((size_t)m * stride, 0.0f);
    pre.assign((size_t)m * stride, 0.0f);
    post.assign((size_t)m * stride, 0.0f);
    headsum.assign((size_t)m * stride, 0.0f);
    headout.assign((size_t)m * stride, 0.0f);
    for (size_t i = 0; i < arrays.size(); ++i) {
      WaveArray& a = arrays[i];
      // the first array's input is the audio; a later one's the previous array's z, copied aside to yin
      for (int r = 0; r < a.in; ++r) a.rechannel_rows.push_back((i == 0 ? cond.data() : yin.data()) + (size_t)r * stride);
      for (int c = 0; c < a.C; ++c) a.head_rows.push_back(headsum.data() + (size_t)c * stride);
      for (auto& l : a.layers) {
        l.xin.assign((size_t)a.C * (l.L + stride), 0.0f);
        for (int c = 0; c < a.C; ++c)
          for (int k = 0; k < a.K; ++k) l.conv_rows.push_back(l.xin.data() + (size_t)c * (l.L + stride) + k * l.d);
        l.conv_rows.push_back(cond.data());
        for (int c = 0; c < a.C; ++c) l.out_rows.push_back(post.data() + (size_t)c * stride);
      }
    }
    finalized = true;
    reset();
  }

  void reset() override {
    for (auto& a : arrays)
      for (auto& l : a.layers)
        for (int c = 0; c < a.C; ++c) {
          float* row = l.xin.data() + (size_t)c * (l.L + stride);
          std::fill(row, row + l.L + stride, 0.0f);
          if (!l.h0.empty()) std::memcpy(row, &l.h0[(size_t)c * l.L], l.L * sizeof(float));
        }
  }

  void run(const float* in, float* out, int T) override {
    std::memcpy(cond.data(), in, T * sizeof(float));
    std::fill(headsum.begin(), headsum.end(), 0.0f);  // the first array's head sum starts from nothing
    for (size_t i = 0; i < arrays.size(); ++i) {
      WaveArray& a = arrays[i];
      if (i > 0) std::memcpy(yin.data(), z.data(), (size_t)a.in * stride * sizeof(float));  // z is rewritten
      mm(a.rechannel.data(), a.C, a.in, a.rechannel_rows.data(), z.data(), stride, Tp, nullptr, false);
      const int mid = a.gated ? 2 * a.C : a.C;
      for (auto& l : a.layers) {
        const int row_len = l.L + stride;
        for (int c = 0; c < a.C; ++c)
          std::memcpy(l.xin.data() + (size_t)c * row_len + l.L, &z[(size_t)c * stride], stride * sizeof(float));
        mm(l.conv_w.data(), mid, a.C * a.K + 1, l.conv_rows.data(), pre.data(), stride, Tp, l.conv_b.data(), false);
        for (int c = 0; c < a.C; ++c) {
          const float* p = &pre[(size_t)c * stride];
          float* q = &post[(size_t)c * stride];
          if (a.gated) {
            const float* g = &pre[(size_t)(c + a.C) * stride];
            for (int t = 0; t < Tp; t += W) store(q + t, activate(a.act, load(p + t)) * vsigmoid(load(g + t)));
          } else {
            for (int t = 0; t < Tp; t += W) store(q + t, activate(a.act, load(p + t)));
          }
          float* hs = &headsum[(size_t)c * stride];
          for (int t = 0; t < Tp; t += W) store(hs + t, load(hs + t) + load(q + t));
        }
        mm(l.out_w.data(), a.C, a.C, l.out_rows.data(), z.data(), stride, Tp, l.out_b.data(), true);
        for (int c = 0; l.L && c < a.C; ++c) {  // this hop's last L inputs are the next hop's history
          float* row = l.xin.data() + (size_t)c * row_len;
          std::memmove(row, row + T, l.L * sizeof(float));
        }
      }
      // the array's head: its sum through head_w, which seeds the next array's sum
      mm(a.head_w.data(), a.head, a.C, a.head_rows.data(), headout.data(), stride, Tp,
         a.head_bias ? a.head_b.data() : nullptr, false);
      std::memcpy(headsum.data(), headout.data(), (size_t)a.head * stride * sizeof(float));
    }
    for (int t = 0; t < T; ++t) out[t] = head_scale * headsum[t];
  }
};

struct Model {
  int T, n_knobs;
  float in_gain, out_gain;
  bool skip = false;
  bool bf16 = false;  // recurrent products in bf16 (ea_set_bf16)
  std::vector<std::unique_ptr<Op>> ops;
  WaveNet* wavenet = nullptr;  // the WaveNet being built (its arrays are added one by one)
  fvec a, b, x;
  bool ready = false;
  int width() const { return ops.empty() ? 1 + n_knobs : ops.back()->n_out; }
};

}  // namespace

extern "C" {

// a model for hops of T samples with n_knobs knob channels after the audio
void* ea_create(int T, int n_knobs, float in_gain, float out_gain) {
  if (T < 1 || T > (1 << 20) || n_knobs < 0 || n_knobs > 64) return nullptr;
  Model* m = new Model();
  m->T = T;
  m->n_knobs = n_knobs;
  m->in_gain = in_gain;
  m->out_gain = out_gain;
  return m;
}

void ea_destroy(void* h) { delete static_cast<Model*>(h); }

// 1 when this build runs recurrent products in bf16 (compiled for a CPU with AVX512_BF16)
int ea_has_bf16() {
#ifdef EA_BF16
  return 1;
#else
  return 0;
#endif
}

// recurrent layers added after this call run their step products in bf16; -1 where the build cannot
int ea_set_bf16(void* h, int on) {
  Model* m = static_cast<Model*>(h);
  if (on && !ea_has_bf16()) return -1;
  if (m->ready) return -1;
  m->bf16 = on != 0;
  return 0;
}

int ea_add_recurrent(void* h, int is_lstm, int n_in, int units, const float* kernel, const float* recurrent,
                     const float* bias, const float* h0, const float* c0) {
  Model* m = static_cast<Model*>(h);
  if (m->ready || n_in != m->width() || units < 1) return -1;
  m->ops.emplace_back(new Recurrent(is_lstm != 0, n_in, units, kernel, recurrent, bias, h0, c0, m->T, m->bf16));
  return 0;
}

int ea_add_dense(void* h, int n_in, int units, int ksize, int dilation, const float* kernel, const float* bias,
                 int act, const float* alpha) {
  Model* m = static_cast<Model*>(h);
  if (m->ready || n_in != m->width() || units < 1 || ksize < 1 || dilation < 1 || act < 0 || act >= N_ACT) return -1;
  m->ops.emplace_back(new Dense(n_in, units, ksize, dilation, kernel, bias, act, alpha, m->T));
  return 0;
}

int ea_add_fir(void* h, int taps, const float* values) {
  Model* m = static_cast<Model*>(h);
  if (m->ready || m->width() != 1 || taps < 2) return -1;
  m->ops.emplace_back(new Fir(taps, values, m->T));
  return 0;
}

void ea_set_skip(void* h, int on) { static_cast<Model*>(h)->skip = on != 0; }

// one NAM layer array: rechannel (C x in), then per layer conv_w (mid, C, K) / conv_b (mid) /
// mixer (mid) / out_w (C, C) / out_b (C) / h0 (C, L) or null, the arrays concatenated in layer order;
// head_w (head, C), head_b (head) or null
int ea_add_wavenet_array(void* h, int in, int C, int head, int K, int n_layers, const int* dilations, int act,
                         int gated, const float* rechannel, const float* conv_w, const float* conv_b,
                         const float* mixer, const float* out_w, const float* out_b, const float* h0,
                         const float* head_w, const float* head_b) {
  Model* m = static_cast<Model*>(h);
  if (m->ready || act < 0 || act >= N_ACT || C < 1 || head < 1 || K < 1 || n_layers < 1 || in < 1) return -1;
  if (!m->wavenet) {
    if (m->width() != 1 || in != 1) return -1;
    m->wavenet = new WaveNet(m->T);
    m->ops.emplace_back(m->wavenet);
  } else if (m->wavenet->arrays.back().head != C || m->wavenet->arrays.back().C != in) {
    return -1;
  }
  WaveArray a;
  a.in = in; a.C = C; a.head = head; a.K = K; a.act = act; a.gated = gated != 0; a.head_bias = head_b != nullptr;
  a.rechannel.assign(rechannel, rechannel + (size_t)C * in);
  a.head_w.assign(head_w, head_w + (size_t)head * C);
  if (head_b) a.head_b.assign(head_b, head_b + head);
  const int mid = a.gated ? 2 * C : C;
  size_t h0_at = 0;
  for (int j = 0; j < n_layers; ++j) {
    WaveLayer l;
    l.d = dilations[j];
    if (l.d < 1) return -1;
    l.L = l.d * (K - 1);
    l.conv_w.assign((size_t)mid * (C * K + 1), 0.0f);
    for (int o = 0; o < mid; ++o) {
      std::memcpy(&l.conv_w[(size_t)o * (C * K + 1)], conv_w + ((size_t)j * mid + o) * C * K, C * K * sizeof(float));
      l.conv_w[(size_t)o * (C * K + 1) + C * K] = mixer[(size_t)j * mid + o];
    }
    l.conv_b.assign(conv_b + (size_t)j * mid, conv_b + (size_t)(j + 1) * mid);
    l.out_w.assign(out_w + (size_t)j * C * C, out_w + (size_t)(j + 1) * C * C);
    l.out_b.assign(out_b + (size_t)j * C, out_b + (size_t)(j + 1) * C);
    if (h0 && l.L) {
      l.h0.assign(h0 + h0_at, h0 + h0_at + (size_t)C * l.L);
      h0_at += (size_t)C * l.L;
    }
    a.layers.push_back(std::move(l));
  }
  m->wavenet->arrays.push_back(std::move(a));
  return 0;
}

int ea_set_head_scale(void* h, float scale) {
  Model* m = static_cast<Model*>(h);
  if (!m->wavenet || m->ready) return -1;
  m->wavenet->head_scale = scale;
  return 0;
}

int ea_finalize(void* h) {
  Model* m = static_cast<Model*>(h);
  if (m->ready || m->ops.empty() || m->width() != 1) return -1;
  if (m->wavenet) {
    if (m->wavenet->arrays.back().head != 1) return -1;
    m->wavenet->finalize();
  }
  size_t widest = 1 + m->n_knobs;
  for (auto& op : m->ops) widest = std::max(widest, (size_t)op->n_out);
  m->a.assign(widest * m->T, 0.0f);
  m->b.assign(widest * m->T, 0.0f);
  m->x.assign(m->T, 0.0f);
  m->ready = true;
  return 0;
}

void ea_reset(void* h) {
  Model* m = static_cast<Model*>(h);
  for (auto& op : m->ops) op->reset();
}

// audio (T,), knobs (T x n_knobs, row-major; may be null without knobs) -> out (T,)
int ea_run(void* h, const float* audio, const float* knobs, float* out) {
  Model* m = static_cast<Model*>(h);
  if (!m->ready) return -1;
  const int T = m->T, nk = m->n_knobs, w = 1 + nk;
  float* cur = m->a.data();
  float* nxt = m->b.data();
  for (int t = 0; t < T; ++t) {
    m->x[t] = audio[t] * m->in_gain;
    cur[(size_t)t * w] = m->x[t];
    for (int k = 0; k < nk; ++k) cur[(size_t)t * w + 1 + k] = knobs[(size_t)t * nk + k];
  }
  for (auto& op : m->ops) {
    op->run(cur, nxt, T);
    std::swap(cur, nxt);
  }
  for (int t = 0; t < T; ++t) out[t] = (cur[t] + (m->skip ? m->x[t] : 0.0f)) * m->out_gain;
  return 0;
}

// what the build targets, for logs and bench.json: the widest vector unit it was compiled for
const char* ea_target() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__SSE2__)
  return "sse2";
#elif defined(__ARM_NEON)
  return "neon";
#else
  return "generic";
#endif
}

}  // extern "C"
