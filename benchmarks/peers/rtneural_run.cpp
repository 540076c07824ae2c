// A small driver for RTNeural (AIDA-X's engine), for edgeamp's side-by-side benchmarks. Built by hand
// from RTNeural's source (benchmarks/peers/README.md), Eigen backend, as AIDA-X builds it.
//
//   rtneural_run render MODEL.json IN.f32 OUT.f32 [--hop N]
//   rtneural_run bench MODEL.json [--hop N] [--hops H]
//
// MODEL.json: RTNeural's Keras-style JSON (an .aidax file, what `edgeamp export-model --format aidax`
// writes). The sizes AIDA-X compiles in run as RTNeural's compile-time models (ModelT, what AIDA-X's
// player runs); any other shape as RTNeural's run-time model (json_parser). The model's output
// only: AIDA-X's input skip and gains are not applied (one add and two multiplies per sample).
// bench prints one JSON line with per-hop milliseconds (p50, p99, max, mean) and which model ran.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <RTNeural/RTNeural.h>

using Forward = std::function<float(float)>;
using Reset = std::function<void()>;

template <typename M>
static bool load_static(const nlohmann::json& j, std::shared_ptr<M>& model) {
  model = std::make_shared<M>();
  try {
    model->parseJson(j, false);
  } catch (...) {
    return false;
  }
  model->reset();
  return true;
}

template <typename M>
static bool try_static(const nlohmann::json& j, Forward& fwd, Reset& reset) {
  static std::shared_ptr<M> keep;
  if (!load_static<M>(j, keep)) return false;
  auto m = keep;
  fwd = [m](float x) { return m->forward(&x); };
  reset = [m]() { m->reset(); };
  return true;
}

// the shapes AIDA-X's model_variant.hpp compiles (one recurrent layer + dense), and edgeamp's seed
template <int N>
using LstmDense = RTNeural::ModelT<float, 1, 1, RTNeural::LSTMLayerT<float, 1, N>, RTNeural::DenseT<float, N, 1>>;
template <int N>
using GruDense = RTNeural::ModelT<float, 1, 1, RTNeural::GRULayerT<float, 1, N>, RTNeural::DenseT<float, N, 1>>;
using Seed = RTNeural::ModelT<float, 1, 1, RTNeural::LSTMLayerT<float, 1, 64>, RTNeural::LSTMLayerT<float, 64, 64>,
                              RTNeural::LSTMLayerT<float, 64, 1>>;

static std::string pick(const nlohmann::json& j, Forward& fwd, Reset& reset) {
  const auto& layers = j.at("layers");
  std::vector<std::string> types;
  std::vector<int> sizes;
  for (const auto& l : layers) {
    types.push_back(l.at("type").get<std::string>());
    sizes.push_back(l.at("shape").back().get<int>());
  }
  const int in = j.at("in_shape").back().get<int>();
  if (in == 1 && types.size() == 2 && types[1] == "dense" && sizes[1] == 1) {
    const int n = sizes[0];
#define TRY(T, N, name) \
  if (n == N && try_static<T<N>>(j, fwd, reset)) return std::string(name " ") + std::to_string(N) + " ModelT";
    if (types[0] == "lstm") {
      TRY(LstmDense, 8, "lstm") TRY(LstmDense, 12, "lstm") TRY(LstmDense, 16, "lstm") TRY(LstmDense, 20, "lstm")
      TRY(LstmDense, 24, "lstm") TRY(LstmDense, 32, "lstm") TRY(LstmDense, 40, "lstm") TRY(LstmDense, 64, "lstm")
    } else if (types[0] == "gru") {
      TRY(GruDense, 8, "gru") TRY(GruDense, 12, "gru") TRY(GruDense, 16, "gru") TRY(GruDense, 20, "gru")
      TRY(GruDense, 24, "gru") TRY(GruDense, 32, "gru") TRY(GruDense, 40, "gru") TRY(GruDense, 64, "gru")
    }
#undef TRY
  }
  if (in == 1 && types == std::vector<std::string>{"lstm", "lstm", "lstm"} && sizes == std::vector<int>{64, 64, 1}
      && try_static<Seed>(j, fwd, reset))
    return "lstm 64-64-1 ModelT";
  static std::unique_ptr<RTNeural::Model<float>> dyn;
  dyn = RTNeural::json_parser::parseJson<float>(j, false);
  if (!dyn) return "";
  dyn->reset();
  RTNeural::Model<float>* m = dyn.get();
  fwd = [m](float x) { return m->forward(&x); };
  reset = [m]() { m->reset(); };
  return "run-time Model";
}

int main(int argc, char* argv[]) {
  if (argc < 3) {
    std::cerr << "usage: rtneural_run render MODEL.json IN.f32 OUT.f32 [--hop N]\n"
                 "       rtneural_run bench MODEL.json [--hop N] [--hops H]\n";
    return 2;
  }
  const std::string mode = argv[1];
  int hop = 480, hops = 2000;
  std::vector<std::string> pos;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--hop" && i + 1 < argc) hop = std::atoi(argv[++i]);
    else if (a == "--hops" && i + 1 < argc) hops = std::atoi(argv[++i]);
    else pos.push_back(a);
  }
  std::ifstream f(pos.at(0));
  nlohmann::json j = nlohmann::json::parse(f);
  Forward fwd;
  Reset reset;
  const std::string which = pick(j, fwd, reset);
  if (which.empty()) {
    std::cerr << "RTNeural could not load " << pos[0] << "\n";
    return 1;
  }
  std::vector<float> in(hop), out(hop);
  auto run = [&]() {
    for (int i = 0; i < hop; ++i) out[i] = fwd(in[i]);
  };
  if (mode == "render") {
    std::ifstream g(pos.at(1), std::ios::binary);
    g.seekg(0, std::ios::end);
    const size_t n = g.tellg() / sizeof(float);
    g.seekg(0);
    std::vector<float> xs(n), ys(n);
    g.read(reinterpret_cast<char*>(xs.data()), n * sizeof(float));
    for (size_t i = 0; i < n; ++i) ys[i] = fwd(xs[i]);
    std::ofstream(pos.at(2), std::ios::binary).write(reinterpret_cast<const char*>(ys.data()), n * sizeof(float));
    return 0;
  }
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  std::vector<double> t(hops);
  for (int k = 0; k < 50 + hops; ++k) {
    for (auto& x : in) x = u(rng);
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const auto t1 = std::chrono::steady_clock::now();
    if (k >= 50) t[k - 50] = std::chrono::duration<double, std::milli>(t1 - t0).count();
  }
  std::vector<double> s = t;
  std::sort(s.begin(), s.end());
  double mean = 0;
  for (double x : t) mean += x;
  mean /= hops;
  std::printf("{\"engine\": \"rtneural\", \"model\": \"%s\", \"hop\": %d, \"hops\": %d, \"p50_ms\": %.6f, \"p99_ms\": %.6f, "
              "\"max_ms\": %.6f, \"mean_ms\": %.6f}\n",
              which.c_str(), hop, hops, s[hops / 2], s[(size_t)(hops * 0.99)], s.back(), mean);
  return 0;
}
