// The only file that sees both Python and the core: convert, release the GIL, call,
// convert back. Defaults and friendly validation live in python/mlpinfer.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "mlpinfer/network.hpp"

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style>;
using DoubleArray = py::array_t<double, py::array::c_style>;

namespace {

// Runs `work` with the GIL released. Not py::gil_scoped_release: when a daemon thread
// comes back after the interpreter began finalising, CPython (before 3.14) ends it with
// pthread_exit, whose forced unwind must not cross a noexcept destructor (that calls
// std::terminate and aborts the process at exit).
template <typename Work>
void without_gil(Work&& work) {
  PyThreadState* state = PyEval_SaveThread();
  try {
    work();
  } catch (...) {
    PyEval_RestoreThread(state);
    throw;
  }
  PyEval_RestoreThread(state);
}

std::vector<float> to_vector(const FloatArray& values) {
  return std::vector<float>(values.data(), values.data() + values.size());
}

// A LayerNorm as (gamma, beta, epsilon, after_activation), or None.
using NormSpec = std::optional<std::tuple<FloatArray, FloatArray, float, bool>>;
// A layer as (W, b, activation name, alpha, beta, norm): see mlpinfer::ActivationSpec.
using LayerSpec = std::tuple<FloatArray, FloatArray, std::string, float, float, NormSpec>;

// The input transform as (shift, multiplier), float64, or None: see mlpinfer::InputTransform.
using TransformSpec = std::optional<std::tuple<DoubleArray, DoubleArray>>;

mlpinfer::Network make_network(const std::vector<LayerSpec>& specs,
                               const TransformSpec& transform) {
  std::vector<mlpinfer::DenseLayer> layers;
  for (const auto& [weights, bias, activation, alpha, beta, norm] : specs) {
    if (weights.ndim() != 2 || bias.ndim() != 1) throw py::value_error("W must be 2-D and b 1-D");
    mlpinfer::DenseLayer layer;
    layer.inputs = static_cast<std::size_t>(weights.shape(0));
    layer.outputs = static_cast<std::size_t>(weights.shape(1));
    layer.weights = to_vector(weights);
    layer.bias = to_vector(bias);
    layer.activation = {mlpinfer::parse_activation(activation), alpha, beta};
    if (norm) {
      const auto& [gamma, shift, epsilon, after_activation] = *norm;
      layer.norm = {to_vector(gamma), to_vector(shift), epsilon, after_activation};
    }
    layers.push_back(std::move(layer));
  }
  mlpinfer::InputTransform input_transform;
  if (transform) {
    const auto& [shift, multiplier] = *transform;
    input_transform.shift.assign(shift.data(), shift.data() + shift.size());
    input_transform.multiplier.assign(multiplier.data(), multiplier.data() + multiplier.size());
  }
  return mlpinfer::Network(std::move(layers), std::move(input_transform));
}

mlpinfer::ElementType element_type(const py::array& x) {
  if (py::isinstance<py::array_t<float>>(x)) return mlpinfer::ElementType::float32;
  if (py::isinstance<py::array_t<double>>(x)) return mlpinfer::ElementType::float64;
  if (py::isinstance<py::array_t<std::uint8_t>>(x)) return mlpinfer::ElementType::uint8;
  throw py::type_error("input dtype must be float32, float64 or uint8, got " +
                       py::str(x.dtype()).cast<std::string>());
}

void forward(const mlpinfer::Network& network, const py::array& x, float input_scale,
             FloatArray& out, unsigned threads) {
  if (x.ndim() != 2) throw py::value_error("input must be 2-D");
  const auto rows = static_cast<std::size_t>(x.shape(0));
  if (out.ndim() != 2 || static_cast<std::size_t>(out.shape(0)) != rows ||
      static_cast<std::size_t>(out.shape(1)) != network.output_width()) {
    throw py::value_error("out must have shape (" + std::to_string(rows) + ", " +
                          std::to_string(network.output_width()) + ")");
  }
  const mlpinfer::InputView view{x.data(), element_type(x), rows,
                                 static_cast<std::size_t>(x.shape(1)), x.strides(0), x.strides(1)};
  float* output = out.mutable_data();
  // Safe without the GIL: the caller's references keep x and out alive, and the core
  // touches only their buffers, never a Python object.
  without_gil([&] { network.forward(view, input_scale, output, threads); });
}

// One call for the common case: a 1-D sample or a 2-D batch in, a new array out.
py::array_t<float> predict(const mlpinfer::Network& network, const py::array& x,
                           float input_scale, unsigned threads) {
  if (x.ndim() != 1 && x.ndim() != 2) throw py::value_error("input must be 1-D or 2-D");
  const bool single = x.ndim() == 1;
  const auto rows = single ? std::size_t{1} : static_cast<std::size_t>(x.shape(0));
  const auto cols = static_cast<std::size_t>(x.shape(x.ndim() - 1));
  const auto width = static_cast<py::ssize_t>(network.output_width());
  py::array_t<float> out = single ? py::array_t<float>(width)
                                  : py::array_t<float>({static_cast<py::ssize_t>(rows), width});
  const py::ssize_t col_stride = x.strides(x.ndim() - 1);
  const mlpinfer::InputView view{x.data(), element_type(x), rows, cols,
                                 single ? col_stride * x.shape(0) : x.strides(0), col_stride};
  float* output = out.mutable_data();
  // Safe without the GIL: x and out stay referenced by this frame, and the core
  // touches only their buffers.
  without_gil([&] { network.forward(view, input_scale, output, threads); });
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "mlpinfer's compiled engine; use the mlpinfer package, not this module";
  m.attr("__version__") = MLPINFER_VERSION;

  py::class_<mlpinfer::Network>(m, "Network")
      .def(py::init(&make_network), py::arg("layers"), py::arg("transform"))
      .def_property_readonly("input_width", &mlpinfer::Network::input_width)
      .def_property_readonly("output_width", &mlpinfer::Network::output_width)
      .def("predict", &predict, py::arg("x"), py::arg("input_scale"), py::arg("threads"))
      .def("forward", &forward, py::arg("x"), py::arg("input_scale"), py::arg("out").noconvert(),
           py::arg("threads"));

  m.def("default_threads", &mlpinfer::default_threads);
  m.def("set_default_threads", &mlpinfer::set_default_threads, py::arg("threads"));
  // std::invalid_argument (a bad MLPINFER_MAX_ISA) becomes ValueError.
  m.def("cpu_info", [] {
    const mlpinfer::CpuInfo info = mlpinfer::cpu_info();
    py::dict result;
    result["isa"] = info.isa;
    result["fused_multiply_add"] = info.fused_multiply_add;
    result["supported"] = info.supported;
    return result;
  });
  m.def("blas_info", &mlpinfer::blas_info);
  m.def(
      "time_blas_sgemm",
      [](std::size_t n, unsigned threads, unsigned repeats) {
        double seconds = 0.0;
        without_gil([&] { seconds = mlpinfer::time_blas_sgemm(n, threads, repeats); });
        return seconds;
      },
      py::arg("n"), py::arg("threads"), py::arg("repeats"));
}
