// eval_gpu of the GRU primitives. Metal builds run metal/gru.metal following the launch plan in
// gru_launch.h (the same plan the emulated tests run); every other build has no GPU path.
#include "gru.h"

#include <stdexcept>

#ifdef _METAL_
#include <dlfcn.h>

#include <cstring>
#include <filesystem>

#include "gru_launch.h"
#include "mlx/backend/metal/device.h"
#include "mlx/backend/metal/utils.h"
#endif

namespace dfnet4 {

#ifdef _METAL_
namespace {

// dfnet4.metallib is installed next to the extension module; find that directory from a symbol
// of this library.
std::string extension_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&extension_dir), &info) == 0 || info.dli_fname == nullptr)
    throw std::runtime_error("dfnet4: cannot locate the extension to load dfnet4.metallib");
  return std::filesystem::path(info.dli_fname).parent_path().string();
}

MTL::Size to_mtl(gru_launch::Size3 s) { return MTL::Size(s.x, s.y, s.z); }

// A zeroed float32 buffer standing in for an absent bhn / h0 (Apple GPUs share memory with the
// CPU, so it is cleared from the host), kept alive until the command buffer completes.
mx::array zeros_buffer(mx::Shape shape, mx::metal::CommandEncoder& enc) {
  mx::array z(std::move(shape), mx::float32, nullptr, {});
  z.set_data(mx::allocator::malloc(z.nbytes()));
  std::memset(z.data<float>(), 0, z.nbytes());
  enc.add_temporary(z);
  return z;
}

void require_float32(const std::vector<mx::array>& in) {
  for (auto& a : in)
    if (a.dtype() != mx::float32)
      throw std::invalid_argument("dfnet4.ops.gru: the Metal kernels compute in float32 only");
}

}  // namespace

void GruForward::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  require_float32(in);
  for (auto& o : out) o.set_data(mx::allocator::malloc(o.nbytes()));
  auto& s = stream();
  auto& d = mx::metal::device(s.device);
  auto* lib = d.get_library("dfnet4", extension_dir());
  auto& enc = mx::metal::get_command_encoder(s);
  const int B = out[0].shape(0), T = out[0].shape(1), H = out[0].shape(2);
  const mx::array bhn = has_bhn_ ? in[2] : zeros_buffer({H}, enc);
  const mx::array h0 = has_h0_ ? in[has_bhn_ ? 3 : 2] : zeros_buffer({B, H}, enc);
  gru_launch::forward(B, T, H, [&](const gru_launch::Dispatch& disp) {
    enc.set_compute_pipeline_state(d.get_kernel(disp.name + "_float32", lib));
    enc.set_input_array(in[0], 0);
    enc.set_input_array(in[1], 1);
    enc.set_input_array(bhn, 2);
    enc.set_input_array(h0, 3);
    enc.set_output_array(out[0], 4);  // read (previous step) and written: orders the dispatches
    enc.set_output_array(out[1], 5);
    enc.set_bytes(disp.params, 6);
    enc.dispatch_threadgroups(to_mtl(disp.groups), to_mtl(disp.threads));
  });
}

void GruBackward::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  require_float32(in);
  for (auto& o : out) o.set_data(mx::allocator::malloc(o.nbytes()));
  auto& s = stream();
  auto& d = mx::metal::device(s.device);
  auto* lib = d.get_library("dfnet4", extension_dir());
  auto& enc = mx::metal::get_command_encoder(s);
  const int B = in[2].shape(0), T = in[2].shape(1), H = in[2].shape(2);
  const mx::array h0 = has_h0_ ? in[4] : zeros_buffer({B, H}, enc);
  // Scratch: the part of dL/dh_t that bypasses Wh, carried from one step's dispatch to the next.
  mx::array dh_direct(mx::Shape{B, H}, mx::float32, nullptr, {});
  dh_direct.set_data(mx::allocator::malloc(dh_direct.nbytes()));
  enc.add_temporary(dh_direct);
  gru_launch::backward(B, T, H, [&](const gru_launch::Dispatch& disp) {
    enc.set_compute_pipeline_state(d.get_kernel(disp.name + "_float32", lib));
    if (disp.name == "gru_backward_step") {
      enc.set_input_array(in[0], 0);  // dhs
      enc.set_input_array(in[1], 1);  // gates
      enc.set_input_array(in[2], 2);  // hs
      enc.set_input_array(h0, 3);
      enc.set_input_array(in[3], 4);  // Wh
      enc.set_output_array(out[0], 5);
      enc.set_output_array(out[1], 6);
      enc.set_output_array(dh_direct, 7);
      enc.set_bytes(disp.params, 8);
    } else {  // gru_backward_dh0
      enc.set_input_array(out[1], 0);
      enc.set_input_array(in[3], 1);
      enc.set_input_array(dh_direct, 2);
      enc.set_output_array(out[2], 3);
      enc.set_bytes(disp.params, 4);
    }
    enc.dispatch_threadgroups(to_mtl(disp.groups), to_mtl(disp.threads));
  });
}

#else

void GruForward::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error(
      "dfnet4.ops.gru: this build of dfnet4 has no GPU kernels (Metal builds only); run on the CPU "
      "stream (mx.set_default_device(mx.cpu)).");
}
void GruBackward::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error(
      "dfnet4.ops.gru: this build of dfnet4 has no GPU kernels (Metal builds only); run on the CPU "
      "stream (mx.set_default_device(mx.cpu)).");
}

#endif

}  // namespace dfnet4
