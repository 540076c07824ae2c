// A small driver for NeuralAmpModelerCore (NAM's C++ engine, what NAM's plugins run), for edgeamp's
// side-by-side checks and benchmarks. Built by hand from NAM Core's sources (benchmarks/peers/README.md):
//
//   nam_core_run render MODEL.nam IN.f32 OUT.f32 [--hop N] [--fast-tanh]
//       raw float32 mono in and out; the model is reset (with NAM's prewarm) first, then processed
//       in blocks of N samples (default 480)
//   nam_core_run bench MODEL.nam [--hop N] [--hops H] [--fast-tanh]
//       H hops of uniform noise (+-0.5) after 50 warm-up hops; prints one JSON line with per-hop
//       milliseconds (p50, p99, max, mean)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "NAM/activations.h"
#include "NAM/dsp.h"
#include "NAM/get_dsp.h"

static int usage()
{
  std::cerr << "usage: nam_core_run render MODEL IN.f32 OUT.f32 [--hop N] [--fast-tanh]\n"
               "       nam_core_run bench MODEL [--hop N] [--hops H] [--fast-tanh]\n";
  return 2;
}

int main(int argc, char* argv[])
{
  if (argc < 3)
    return usage();
  const std::string mode = argv[1];
  int hop = 480, hops = 2000;
  bool fast_tanh = false;
  std::vector<std::string> pos;
  for (int i = 2; i < argc; i++)
  {
    std::string a = argv[i];
    if (a == "--hop" && i + 1 < argc)
      hop = std::atoi(argv[++i]);
    else if (a == "--hops" && i + 1 < argc)
      hops = std::atoi(argv[++i]);
    else if (a == "--fast-tanh")
      fast_tanh = true;
    else
      pos.push_back(a);
  }
  if (fast_tanh)
    nam::activations::Activation::enable_fast_tanh();
  else
    nam::activations::Activation::disable_fast_tanh();
  std::unique_ptr<nam::DSP> model = nam::get_dsp(std::filesystem::path(pos.at(0)));
  if (!model)
  {
    std::cerr << "could not load " << pos[0] << "\n";
    return 1;
  }
  const double rate = model->GetExpectedSampleRate() > 0 ? model->GetExpectedSampleRate() : 48000.0;
  model->Reset(rate, hop);  // Reset prewarms (NAM's receptive field of silence)
  std::vector<NAM_SAMPLE> in(hop), out(hop);
  NAM_SAMPLE* ip = in.data();
  NAM_SAMPLE* op = out.data();
  if (mode == "render")
  {
    if (pos.size() < 3)
      return usage();
    std::ifstream g(pos[1], std::ios::binary);
    g.seekg(0, std::ios::end);
    const size_t n = g.tellg() / sizeof(float);
    g.seekg(0);
    std::vector<float> xs(n), ys(n);
    g.read(reinterpret_cast<char*>(xs.data()), n * sizeof(float));
    for (size_t lo = 0; lo < n; lo += hop)
    {
      const int m = (int)std::min<size_t>(hop, n - lo);
      for (int i = 0; i < m; i++)
        in[i] = xs[lo + i];
      model->process(&ip, &op, m);
      for (int i = 0; i < m; i++)
        ys[lo + i] = (float)out[i];
    }
    std::ofstream o(pos[2], std::ios::binary);
    o.write(reinterpret_cast<const char*>(ys.data()), n * sizeof(float));
    return 0;
  }
  if (mode != "bench")
    return usage();
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  std::vector<double> ms;
  ms.reserve(hops);
  for (int k = 0; k < hops + 50; k++)
  {
    for (int i = 0; i < hop; i++)
      in[i] = u(rng);
    auto t0 = std::chrono::steady_clock::now();
    model->process(&ip, &op, hop);
    auto t1 = std::chrono::steady_clock::now();
    if (k >= 50)
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::vector<double> s = ms;
  std::sort(s.begin(), s.end());
  double mean = 0;
  for (double v : ms)
    mean += v;
  mean /= ms.size();
  std::printf("{\"engine\": \"NeuralAmpModelerCore\", \"hop\": %d, \"hops\": %d, \"fast_tanh\": %s, "
              "\"p50_ms\": %.6f, \"p99_ms\": %.6f, \"max_ms\": %.6f, \"mean_ms\": %.6f}\n",
              hop, hops, fast_tanh ? "true" : "false", s[s.size() / 2], s[(size_t)(0.99 * (s.size() - 1))],
              s.back(), mean);
  return 0;
}
