#include "worker/runtime/directions.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/checksum.h"

namespace schism::model {
namespace {

constexpr char kMagic[] = "SCHDIR1\n";

}  // namespace

at::Tensor ResidualMeans(const Transformer& model, const std::vector<TokenIds>& prompts,
                         int32_t pad_id, int batch_size, double winsorization_quantile) {
  c10::NoGradGuard no_grad;
  at::Tensor sum;
  for (size_t start = 0; start < prompts.size(); start += batch_size) {
    const size_t end = std::min(prompts.size(), start + static_cast<size_t>(batch_size));
    std::vector<TokenIds> batch(prompts.begin() + start, prompts.begin() + end);
    ForwardOutput out = PromptForward(model, batch, pad_id, /*capture_hidden_states=*/true);
    auto states = at::stack(out.hidden_states, 1).to(at::kDouble);  // (B, N+1, H)
    if (winsorization_quantile < 1.0) {
      auto threshold = at::quantile(states.abs(), winsorization_quantile, -1, /*keepdim=*/true);
      states = at::max(at::min(states, threshold), -threshold);
    }
    auto batch_sum = states.sum(0);
    sum = sum.defined() ? sum + batch_sum : batch_sum;
  }
  return sum / static_cast<double>(prompts.size());
}

namespace {

// Unit rows along `dim`, as torch.nn.functional.normalize (p = 2, eps = 1e-12) computes them.
at::Tensor Normalize(const at::Tensor& x, int64_t dim) {
  return x / x.norm(2, dim, /*keepdim=*/true).clamp_min(1e-12).expand_as(x);
}

}  // namespace

at::Tensor RefusalDirections(const at::Tensor& good_means, const at::Tensor& bad_means,
                             bool orthogonalize) {
  auto r = Normalize(bad_means - good_means, 1);
  if (orthogonalize) {
    auto g = Normalize(good_means, 1);
    auto projection = (r * g).sum(1, /*keepdim=*/true);
    r = Normalize(r - projection * g, 1);
  }
  return r.to(at::kFloat);
}

at::Tensor DirectionForLayer(const at::Tensor& directions, const common::TrialParameters& params,
                             int layer) {
  if (!params.global_direction) return directions[layer + 1];
  const double position = params.direction_index + 1;
  const int64_t i =
      std::clamp<int64_t>(static_cast<int64_t>(std::floor(position)), 0, directions.size(0) - 1);
  const double f = position - std::floor(position);
  const int64_t j = std::min<int64_t>(i + 1, directions.size(0) - 1);
  auto v = at::lerp(directions[i], directions[j], f);
  return Normalize(v, 0);
}

std::string SerializeDirections(const at::Tensor& directions) {
  auto r = directions.to(at::kCPU, at::kFloat).contiguous();
  const uint64_t rows = r.size(0), cols = r.size(1);
  std::string out(kMagic, 8);
  out.append(reinterpret_cast<const char*>(&rows), 8);
  out.append(reinterpret_cast<const char*>(&cols), 8);
  const char* data = reinterpret_cast<const char*>(r.data_ptr<float>());
  const size_t n = rows * cols * sizeof(float);
  out.append(data, n);
  const uint64_t checksum = common::Fnv1a64(data, n);
  out.append(reinterpret_cast<const char*>(&checksum), 8);
  return out;
}

absl::StatusOr<at::Tensor> ParseDirections(const std::string& bytes, const std::string& where) {
  if (bytes.size() < 32 || bytes.compare(0, 8, kMagic, 8) != 0) {
    return absl::DataLossError(absl::StrCat(where, ": not a schism directions artifact"));
  }
  uint64_t rows, cols;
  std::memcpy(&rows, bytes.data() + 8, 8);
  std::memcpy(&cols, bytes.data() + 16, 8);
  if (rows == 0 || cols == 0 || rows > (1 << 16) || cols > (1 << 20) ||
      bytes.size() != 32 + rows * cols * sizeof(float)) {
    return absl::DataLossError(
        absl::StrCat(where, ": size does not match its ", rows, "x", cols, " header"));
  }
  const char* data = bytes.data() + 24;
  uint64_t checksum;
  std::memcpy(&checksum, bytes.data() + 24 + rows * cols * sizeof(float), 8);
  if (checksum != common::Fnv1a64(data, rows * cols * sizeof(float))) {
    return absl::DataLossError(absl::StrCat(where, ": checksum mismatch (corrupt artifact)"));
  }
  auto r = at::empty({static_cast<int64_t>(rows), static_cast<int64_t>(cols)}, at::kFloat);
  std::memcpy(r.data_ptr<float>(), data, rows * cols * sizeof(float));
  return r;
}

absl::Status SaveDirections(const std::string& path, const at::Tensor& directions) {
  const std::string bytes = SerializeDirections(directions);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> LoadDirections(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseDirections(ss.str(), path);
}

}  // namespace schism::model
