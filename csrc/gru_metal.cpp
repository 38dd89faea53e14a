// eval_gpu of the GRU primitives (Metal builds only; elsewhere FlaggedPrimitive's error): runs
// metal/gru.metal following the launch plan in gru_launch.h (the same plan the emulated tests run);
// device, kernels and buffers come through metal_host.h.
#include "gru.h"

#ifdef _METAL_

#include <cstring>

#include "gru_launch.h"
#include "metal_host.h"

namespace dfnet4 {

namespace {

// A zeroed float32 buffer standing in for an absent bhn / h0 (Apple GPUs share memory with the
// CPU, so it is cleared from the host), kept alive until the command buffer completes.
mx::array zeros_buffer(mx::Shape shape, mx::metal::CommandEncoder& enc) {
  mx::array z = metal_host::scratch(std::move(shape), enc);
  std::memset(z.data<float>(), 0, z.nbytes());
  return z;
}

}  // namespace

void GruForward::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  namespace mh = metal_host;
  check_input_sizes(in, out);
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "GruForward", in, out);
  auto& enc = mx::metal::get_command_encoder(stream());
  const int B = out[0].shape(0), T = out[0].shape(1), H = out[0].shape(2);
  const GruInputs at(flags_);
  const mx::array bhn = at.bhn >= 0 ? in[at.bhn] : zeros_buffer({H}, enc);
  const mx::array h0 = at.h0 >= 0 ? in[at.h0] : zeros_buffer({B, H}, enc);
  gru_launch::forward(B, T, H, [&](const gru_launch::Dispatch& disp) {
    enc.set_compute_pipeline_state(mh::kernel(d, names_, disp.name + "_float32"));
    enc.set_input_array(in[0], 0);
    enc.set_input_array(in[1], 1);
    enc.set_input_array(bhn, 2);
    enc.set_input_array(h0, 3);
    enc.set_output_array(out[0], 4);  // read (previous step) and written: orders the dispatches
    enc.set_output_array(out[1], 5);
    enc.set_bytes(disp.params, 6);
    enc.dispatch_threadgroups(mh::size(disp.groups), mh::size(disp.threads));
  });
}

void GruBackward::eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) {
  namespace mh = metal_host;
  check_input_sizes(in);
  auto& d = mh::begin_gpu_eval(stream(), names_.op, "GruBackward", in, out);
  auto& enc = mx::metal::get_command_encoder(stream());
  const int B = in[2].shape(0), T = in[2].shape(1), H = in[2].shape(2);
  const mx::array h0 = has(dfk::kGruHasH0) ? in[4] : zeros_buffer({B, H}, enc);
  // Scratch: the part of dL/dh_t that bypasses Wh, carried from one step's dispatch to the next.
  mx::array dh_direct = mh::scratch({B, H}, enc);
  gru_launch::backward(B, T, H, [&](const gru_launch::Dispatch& disp) {
    enc.set_compute_pipeline_state(mh::kernel(d, names_, disp.name + "_float32"));
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
    enc.dispatch_threadgroups(mh::size(disp.groups), mh::size(disp.threads));
  });
}

}  // namespace dfnet4

#endif  // _METAL_
