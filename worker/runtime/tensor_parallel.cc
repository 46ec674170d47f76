#include "worker/runtime/tensor_parallel.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <thread>
#include <vector>

#ifdef SCHISM_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef SCHISM_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace schism::model {
namespace {

constexpr char kMessageKey[] = "schism/tp/message/";
constexpr char kAckKey[] = "schism/tp/ack/";

#ifdef SCHISM_WITH_GLOO
bool IsLoopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// Gloo's transport device: loopback for a single-host group; GLOO_SOCKET_IFNAME as torch reads
// it; else the interface the host name resolves to.
std::shared_ptr<::gloo::transport::Device> GlooDevice(const std::string& master_host) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (IsLoopback(master_host)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

}  // namespace

struct TensorParallel::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  c10::Device device = c10::Device(c10::kCPU);
  const char* backend_name = "gloo";
};

absl::StatusOr<std::shared_ptr<TensorParallel>> TensorParallel::Connect(
    const TensorParallelOptions& options, const c10::Device& device) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("tensor parallel: rank ", options.rank,
                                                   " outside a group of ", options.world_size));
  }
  if (options.master_port <= 0 || options.master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor parallel: master port ", options.master_port, " is not a port"));
  }
  auto group = std::make_unique<Group>();
  group->device = device;
  const std::string where = absl::StrCat(options.master_host, ":", options.master_port);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(options.master_port);
    store_options.isServer = options.rank == 0;
    store_options.numWorkers = options.world_size;
    store_options.waitWorkers = true;
    store_options.timeout = options.timeout;
    group->store = c10::make_intrusive<c10d::TCPStore>(options.master_host, store_options);
    if (device.is_cpu()) {
#ifdef SCHISM_WITH_GLOO
      auto gloo = c10d::ProcessGroupGloo::Options::create(options.timeout);
      gloo->devices.push_back(GlooDevice(options.master_host));
      group->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, options.rank,
                                                                   options.world_size, gloo);
#else
      return absl::FailedPreconditionError(
          "tensor parallel on the CPU needs Gloo: this build found no gloo headers (libgloo-dev)");
#endif
    } else if (device.is_cuda()) {
#ifdef SCHISM_WITH_CUDA_KERNELS
      c10::cuda::set_device(device.index() < 0 ? 0 : device.index());
      auto nccl = c10d::ProcessGroupNCCL::Options::create();
      nccl->timeout = options.timeout;
      group->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, options.rank,
                                                                   options.world_size, nccl);
      group->backend_name = "nccl";
#else
      return absl::FailedPreconditionError(
          "tensor parallel on CUDA needs NCCL: build with -DSCHISM_CUDA=ON");
#endif
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor parallel: no process group for device ", device.str()));
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("tensor parallel: rank ", options.rank, " of ",
                                               options.world_size, " could not join at ", where,
                                               ": ", e.what()));
  }
  return std::shared_ptr<TensorParallel>(
      new TensorParallel(options.rank, options.world_size, std::move(group)));
}

absl::StatusOr<std::shared_ptr<TensorParallel>> ConnectIfParallel(
    const TensorParallelOptions& options, const c10::Device& device) {
  if (options.world_size == 1) return std::shared_ptr<TensorParallel>();
  return TensorParallel::Connect(options, device);
}

TensorParallel::TensorParallel(int rank, int world_size, std::unique_ptr<Group> group)
    : rank_(rank), world_size_(world_size), group_(std::move(group)) {}

TensorParallel::~TensorParallel() = default;

const char* TensorParallel::backend_name() const { return group_->backend_name; }

void TensorParallel::AllReduceSum(at::Tensor& t) const {
  std::vector<at::Tensor> tensors{t.is_contiguous() ? t : t.contiguous()};
  group_->backend->allreduce(tensors)->wait();
  if (!tensors[0].is_same(t)) t.copy_(tensors[0]);
}

void TensorParallel::Broadcast(at::Tensor& t) const {
  std::vector<at::Tensor> tensors{t.is_contiguous() ? t : t.contiguous()};
  c10d::BroadcastOptions options;
  options.rootRank = 0;
  group_->backend->broadcast(tensors, options)->wait();
  if (!tensors[0].is_same(t)) t.copy_(tensors[0]);
}

absl::Status TensorParallel::Agree(const absl::Status& local) const {
  at::Tensor failed = at::zeros({world_size_}, at::TensorOptions(at::kInt).device(group_->device));
  if (!local.ok()) failed[rank_].fill_(1);
  try {
    AllReduceSum(failed);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("tensor parallel: rank ", rank_, " lost the other ranks: ", e.what()));
  }
  const at::Tensor flags = failed.to(at::kCPU);
  std::vector<int> ranks;
  for (int r = 0; r < world_size_; ++r) {
    if (flags[r].item<int>() != 0) ranks.push_back(r);
  }
  if (ranks.empty()) return absl::OkStatus();
  if (!local.ok()) return local;
  return absl::AbortedError(absl::StrCat("tensor parallel: rank(s) ", absl::StrJoin(ranks, ", "),
                                         " failed (their log says why)"));
}

void TensorParallel::Publish(const std::string& message) {
  const int64_t n = next_message_++;
  group_->store->set(absl::StrCat(kMessageKey, n),
                     std::vector<uint8_t>(message.begin(), message.end()));
  // Messages every follower has read are dropped, so the store stays small on long runs.
  for (int64_t old = n - 1; old >= 0 && old >= n - 4; --old) {
    const std::string ack = absl::StrCat(kAckKey, old);
    if (group_->store->check({ack}) && group_->store->add(ack, 0) >= world_size_ - 1) {
      group_->store->deleteKey(absl::StrCat(kMessageKey, old));
      group_->store->deleteKey(ack);
    }
  }
}

absl::StatusOr<std::string> TensorParallel::NextMessage() {
  const std::string key = absl::StrCat(kMessageKey, next_message_);
  try {
    // check() answers at once; a lost rank 0 (its store with it) is a network error.
    for (int polls = 0; !group_->store->check({key}); ++polls) {
      std::this_thread::sleep_for(std::chrono::milliseconds(polls < 200 ? 2 : 50));
    }
    const std::vector<uint8_t> bytes = group_->store->get(key);
    group_->store->add(absl::StrCat(kAckKey, next_message_), 1);
    ++next_message_;
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("tensor parallel: rank ", rank_, " lost rank 0: ", e.what()));
  }
}

}  // namespace schism::model
