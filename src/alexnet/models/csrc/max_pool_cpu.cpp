// Max-pooling over NCHW CPU tensors (Krizhevsky et al. 2012, section 3.4: overlapping pooling,
// z = 3, s = 2), with the gradient of torch.nn.functional.max_pool2d.
//
//   y[n, c, i, j] = max_{0 <= u, v < K} x[n, c, S i + u, S j + v]     (no padding, floor mode)
//   ∂L/∂x[n, c, S i + u*, S j + v*] += g[n, c, i, j]                   ((u*, v*): the maximum)
//
// Same choice of maximum as PyTorch's CPU kernel: the window is read row by row, and an element
// replaces the running maximum when it is greater or NaN (so ties go to the first element in
// reading order, NaNs to the last NaN). The backward adds the gradients in the same output order,
// so results and gradients are bit-identical to max_pool2d's.
//
// Why: PyTorch's NCHW kernel handles one output at a time with an int64 index per compared element
// (about 17 ms for conv1's 32×48×55×55 maps on two threads, against about 1.3 ms in channels_last
// order). Here one output row of a map is built at once: for each window offset (u, v), in reading
// order, the whole row of candidates is compared with the row of running maxima, a loop the
// compiler vectorises. The window offset of each maximum is kept as one byte (K*K <= 256), not an
// int64 index: a 1/8 of the memory saved for the backward.
//
// Built with lrn_cpu.cpp by alexnet/models/native.py. Registers torch.ops.alexnet_native.max_pool_forward
// and .max_pool_backward (float32, float64; NCHW-contiguous input).

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

namespace {

int64_t pooled(int64_t size, int64_t kernel, int64_t stride) { return (size - kernel) / stride + 1; }

void check_window(int64_t kernel, int64_t stride) {
  TORCH_CHECK(kernel >= 1 && kernel <= 16, "alexnet_native max_pool: kernel must be 1..16, got ", kernel);
  TORCH_CHECK(stride >= 1, "alexnet_native max_pool: stride must be positive, got ", stride);
}

// One output row of one map: best/code hold the running maxima and their window offsets.
// The update of one candidate x at window offset c, in reading order: greater, or NaN (as PyTorch).
template <typename T>
inline void take_if_greater(T x, int32_t c, T& best, int32_t& code) {
  const bool take = (x > best) || (x != x);
  best = take ? x : best;
  code = take ? c : code;
}

// Any window: for each offset (u, v) in reading order, the row of candidates against the row of
// running maxima.
template <typename T>
inline void pool_row(const T* __restrict rows, int64_t width, int64_t out_w, int64_t kernel, int64_t stride,
                     T* __restrict best, int32_t* __restrict code) {
  for (int64_t j = 0; j < out_w; ++j) {
    best[j] = -std::numeric_limits<T>::infinity();
    code[j] = 0;
  }
  for (int64_t u = 0; u < kernel; ++u) {
    const T* __restrict row = rows + u * width;
    for (int64_t v = 0; v < kernel; ++v) {
      const int32_t c = static_cast<int32_t>(u * kernel + v);
      for (int64_t j = 0; j < out_w; ++j) take_if_greater(row[j * stride + v], c, best[j], code[j]);
    }
  }
}

// The paper's window (z = 3, s = 2): each window row's three candidates are read together (an
// even/odd pair of loads the compiler vectorises), then compared in reading order.
template <typename T>
inline void pool_row_3x3s2(const T* __restrict rows, int64_t width, int64_t out_w, T* __restrict best,
                           int32_t* __restrict code) {
  for (int64_t j = 0; j < out_w; ++j) {
    best[j] = -std::numeric_limits<T>::infinity();
    code[j] = 0;
  }
  for (int u = 0; u < 3; ++u) {
    const T* __restrict row = rows + u * width;
    for (int64_t j = 0; j < out_w; ++j) {
      T b = best[j];
      int32_t c = code[j];
      take_if_greater(row[2 * j], 3 * u, b, c);
      take_if_greater(row[2 * j + 1], 3 * u + 1, b, c);
      take_if_greater(row[2 * j + 2], 3 * u + 2, b, c);
      best[j] = b;
      code[j] = c;
    }
  }
}

template <bool PAPER, typename T>
void forward_planes(const T* x, T* y, uint8_t* arg, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                    int64_t kernel, int64_t stride) {
  at::parallel_for(0, planes, 8, [&](int64_t begin, int64_t end) {
    std::vector<T> best(ow);
    std::vector<int32_t> code(ow);
    for (int64_t p = begin; p < end; ++p) {
      const T* xp = x + p * h * w;
      for (int64_t i = 0; i < oh; ++i) {
        if constexpr (PAPER)
          pool_row_3x3s2(xp + i * 2 * w, w, ow, best.data(), code.data());
        else
          pool_row(xp + i * stride * w, w, ow, kernel, stride, best.data(), code.data());
        T* yr = y + (p * oh + i) * ow;
        uint8_t* ar = arg + (p * oh + i) * ow;
        for (int64_t j = 0; j < ow; ++j) {
          yr[j] = best[j];
          ar[j] = static_cast<uint8_t>(code[j]);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> max_pool_forward(const at::Tensor& input, int64_t kernel, int64_t stride) {
  check_window(kernel, stride);
  TORCH_CHECK(input.dim() == 4 && input.device().is_cpu(), "alexnet_native max_pool: expects a 4-D CPU tensor");
  TORCH_CHECK(input.size(2) >= kernel && input.size(3) >= kernel,
              "alexnet_native max_pool: maps smaller than the window");
  const at::Tensor x = input.contiguous();
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = pooled(h, kernel, stride), ow = pooled(w, kernel, stride);
  at::Tensor y = at::empty({x.size(0), x.size(1), oh, ow}, x.options());
  at::Tensor arg = at::empty({x.size(0), x.size(1), oh, ow}, x.options().dtype(at::kByte));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "alexnet_max_pool_forward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    uint8_t* ap = arg.mutable_data_ptr<uint8_t>();
    if (kernel == 3 && stride == 2)
      forward_planes<true>(xp, yp, ap, planes, h, w, oh, ow, kernel, stride);
    else
      forward_planes<false>(xp, yp, ap, planes, h, w, oh, ow, kernel, stride);
  });
  return {y, arg};
}

at::Tensor max_pool_backward(const at::Tensor& grad_out, const at::Tensor& argmax, int64_t height, int64_t width,
                             int64_t kernel, int64_t stride) {
  check_window(kernel, stride);
  TORCH_CHECK(argmax.scalar_type() == at::kByte && grad_out.sizes() == argmax.sizes() && grad_out.dim() == 4,
              "alexnet_native max_pool: gradient and window offsets differ in shape");
  const int64_t oh = grad_out.size(2), ow = grad_out.size(3);
  TORCH_CHECK(pooled(height, kernel, stride) == oh && pooled(width, kernel, stride) == ow,
              "alexnet_native max_pool: input size does not give the gradient's size");
  const at::Tensor g = grad_out.contiguous();
  const at::Tensor a = argmax.contiguous();
  at::Tensor gx = at::zeros({g.size(0), g.size(1), height, width}, g.options());
  const int64_t planes = g.size(0) * g.size(1);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "alexnet_max_pool_backward", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const uint8_t* ap = a.const_data_ptr<uint8_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, planes, 8, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        scalar_t* dst = gxp + p * height * width;
        const scalar_t* src = gp + p * oh * ow;
        const uint8_t* code = ap + p * oh * ow;
        for (int64_t i = 0; i < oh; ++i) {
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t c = code[i * ow + j];
            dst[(i * stride + c / kernel) * width + j * stride + c % kernel] += src[i * ow + j];
          }
        }
      }
    });
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(alexnet_native, m) {
  m.def("max_pool_forward(Tensor x, int kernel, int stride) -> (Tensor, Tensor)");
  m.def("max_pool_backward(Tensor grad, Tensor argmax, int height, int width, int kernel, int stride) -> Tensor");
}

TORCH_LIBRARY_IMPL(alexnet_native, CPU, m) {
  m.impl("max_pool_forward", &max_pool_forward);
  m.impl("max_pool_backward", &max_pool_backward);
}
