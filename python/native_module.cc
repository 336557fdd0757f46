// fulcrum._native: the C++ worker library (worker/fulcrum_worker.h) for
// Python. The worker protocol (registration, heartbeats, leases, clocks,
// retries, deadlines) stays in C++; Python sees a Session taking numpy
// arrays. Errors are raised as fulcrum._native.Error(code, message), which
// python/fulcrum/__init__.py turns into fulcrum.FulcrumError.
//
// Every call that may block releases the GIL: a training loop in another
// Python thread, and the session's heartbeat thread, keep running.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "pybind11/numpy.h"
#include "pybind11/pybind11.h"
#include "pybind11/stl.h"
#include "worker/fulcrum_worker.h"

namespace py = pybind11;

namespace fulcrum {
namespace {

// The Python exception type for a non-OK status, set at import.
PyObject* error_type = nullptr;

[[noreturn]] void Raise(const absl::Status& status) {
  PyErr_SetObject(
      error_type,
      py::make_tuple(absl::StatusCodeToString(status.code()), std::string(status.message())).ptr());
  throw py::error_already_set();
}

void Check(const absl::Status& status) {
  if (!status.ok()) Raise(status);
}

using FloatArray = py::array_t<float, py::array::c_style>;
using KeyArray = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;

// "(2, 3)" for an array's shape.
std::string ShapeOf(const py::array& array) {
  std::vector<std::string> dims;
  for (py::ssize_t d = 0; d < array.ndim(); ++d) dims.push_back(std::to_string(array.shape(d)));
  return absl::StrCat("(", absl::StrJoin(dims, ", "), dims.size() == 1 ? ",)" : ")");
}

// A float32 C-contiguous numpy array's memory (no copy: the caller's array
// is read or written in place), shaped `shape` or flat; an empty `shape`
// checks none. TypeError for another type or layout; FulcrumError
// INVALID_ARGUMENT for another shape.
absl::Span<float> FloatsOf(const py::handle& object, const std::string& what, bool writable,
                           const std::vector<int64_t>& shape) {
  if (!py::isinstance<py::array>(object)) {
    throw py::type_error(absl::StrCat(what, ": expected a numpy float32 array"));
  }
  py::array array = py::reinterpret_borrow<py::array>(object);
  if (!array.dtype().is(py::dtype::of<float>())) {
    throw py::type_error(absl::StrCat(what, ": expected a float32 array, got dtype ",
                                      std::string(py::str(array.dtype()))));
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::type_error(absl::StrCat(
        what, ": expected a C-contiguous float32 array, got a strided view of shape ",
        ShapeOf(array), " (pulls write into the array itself: pass a contiguous one, e.g. ",
        "numpy.ascontiguousarray, and read the result from it)"));
  }
  if (writable && !array.writeable()) {
    throw py::value_error(absl::StrCat(what, ": the array is read-only"));
  }
  const bool flat = array.ndim() == 1;
  bool same = static_cast<size_t>(array.ndim()) == shape.size();
  for (size_t d = 0; same && d < shape.size(); ++d) same = array.shape(d) == shape[d];
  if (!shape.empty() && !flat && !same) {
    Raise(absl::InvalidArgumentError(absl::StrCat(what, " is shaped [", absl::StrJoin(shape, ", "),
                                                  "]; the array is ", ShapeOf(array),
                                                  ": pass that shape, or a flat array")));
  }
  return absl::MakeSpan(static_cast<float*>(array.mutable_data()), array.size());
}

// The shape of dense tensor `name` in `job` (empty if it has none: the
// server names the mistake).
std::vector<int64_t> TensorShape(const JobSpec& job, const std::string& name) {
  for (const TensorSpec& t : job.tensors()) {
    if (t.name() == name) return {t.shape().begin(), t.shape().end()};
  }
  return {};
}

// The row width of sparse table `name` in `job` (0 if it has none).
int64_t TableDim(const JobSpec& job, const std::string& name) {
  for (const SparseTableSpec& t : job.sparse_tables()) {
    if (t.name() == name) return t.dim();
  }
  return 0;
}

// Buffers over Python objects, and the key arrays they point into (kept
// alive for the call).
struct PyBuffers {
  Buffers buffers;
  std::vector<KeyArray> keys;
};

// dense: {name: float32 array, shaped as the job's tensor or flat};
// sparse: {table: (uint64 keys, float32 values)} with values shaped keys x
// dim, or flat.
PyBuffers ToBuffers(const JobSpec& job, const py::dict& dense, const py::dict& sparse,
                    bool writable) {
  PyBuffers out;
  for (const auto& [name, array] : dense) {
    const std::string n = py::cast<std::string>(name);
    out.buffers.dense.push_back({n, FloatsOf(array, "tensor " + n, writable, TensorShape(job, n))});
  }
  out.keys.reserve(sparse.size());
  for (const auto& [table, pair] : sparse) {
    const std::string t = py::cast<std::string>(table);
    py::tuple kv = py::cast<py::tuple>(pair);
    if (kv.size() != 2) {
      throw py::type_error(absl::StrCat("table ", t, ": expected (keys, values)"));
    }
    out.keys.push_back(KeyArray::ensure(kv[0]));
    if (!out.keys.back()) throw py::type_error(absl::StrCat("table ", t, ": keys not integers"));
    const KeyArray& keys = out.keys.back();
    const int64_t dim = TableDim(job, t);
    std::vector<int64_t> shape;
    if (dim > 0) shape = {static_cast<int64_t>(keys.size()), dim};
    out.buffers.sparse.push_back(
        {t, absl::MakeConstSpan(keys.data(), keys.size()),
         FloatsOf(kv[1], "table " + t + "'s row buffer", writable, shape)});
  }
  return out;
}

py::dict TaskToDict(const Task& task) {
  static const char* const kKinds[] = {"train", "evaluate", "wait", "done"};
  py::dict d;
  d["kind"] = kKinds[task.kind];
  d["lease_id"] = task.lease_id;
  d["partition"] =
      py::make_tuple(task.partition.index(), task.partition.count(), task.partition.epoch());
  d["eval_epoch"] = task.eval_epoch;
  d["eval_final"] = task.eval_final;
  d["retry_after"] = absl::ToDoubleSeconds(task.retry_after);
  return d;
}

Task TaskFromDict(const py::dict& d) {
  Task task;
  const std::string kind = py::cast<std::string>(d["kind"]);
  task.kind = kind == "train"      ? Task::kTrain
              : kind == "evaluate" ? Task::kEvaluate
              : kind == "wait"     ? Task::kWait
                                   : Task::kDone;
  task.lease_id = py::cast<uint64_t>(d["lease_id"]);
  py::tuple p = py::cast<py::tuple>(d["partition"]);
  task.partition.set_index(py::cast<uint32_t>(p[0]));
  task.partition.set_count(py::cast<uint32_t>(p[1]));
  task.partition.set_epoch(py::cast<uint32_t>(p[2]));
  task.eval_epoch = py::cast<int64_t>(d["eval_epoch"]);
  task.eval_final = py::cast<bool>(d["eval_final"]);
  return task;
}

// The job as protobuf's JSON mapping (field names as in the job file).
std::string JobJson(const JobSpec& job) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(job, &json, options);
  return json;
}

class PySession {
 public:
  explicit PySession(const ConnectionOptions& options) {
    absl::StatusOr<std::unique_ptr<Session>> session;
    {
      py::gil_scoped_release release;
      session = Session::Open(options);
    }
    if (!session.ok()) Raise(session.status());
    session_ = std::move(*session);
  }

  std::string job_json() const { return JobJson(session_->job()); }
  int64_t worker_id() const { return session_->worker_id(); }

  py::dict NextTask() {
    absl::StatusOr<Task> task;
    {
      py::gil_scoped_release release;
      task = session_->NextTask();
    }
    if (!task.ok()) Raise(task.status());
    return TaskToDict(*task);
  }

  void Pull(const py::dict& dense, const py::dict& sparse) {
    PyBuffers params = ToBuffers(session_->job(), dense, sparse, /*writable=*/true);
    Call([&] { return session_->Pull(params.buffers); });
  }

  void PullForEval(const py::dict& dense, const py::dict& sparse) {
    PyBuffers params = ToBuffers(session_->job(), dense, sparse, /*writable=*/true);
    Call([&] { return session_->PullForEval(params.buffers); });
  }

  void Push(const py::dict& dense, const py::dict& sparse, int64_t examples, double loss) {
    PyBuffers grads = ToBuffers(session_->job(), dense, sparse, /*writable=*/false);
    Call([&] { return session_->Push(grads.buffers, examples, loss); });
  }

  void PushPull(const py::dict& grad_dense, const py::dict& grad_sparse, int64_t examples,
                double loss, const py::dict& param_dense, const py::dict& param_sparse) {
    PyBuffers grads = ToBuffers(session_->job(), grad_dense, grad_sparse, /*writable=*/false);
    PyBuffers params = ToBuffers(session_->job(), param_dense, param_sparse, /*writable=*/true);
    Call([&] { return session_->PushPull(grads.buffers, examples, loss, params.buffers); });
  }

  void Complete(const py::dict& task) {
    const Task t = TaskFromDict(task);
    Call([&] { return session_->Complete(t); });
  }

  void ReportEval(const py::dict& task, double accuracy, double loss, double auc,
                  const py::dict& metrics) {
    const Task t = TaskFromDict(task);
    EvalResult eval;
    eval.set_test_accuracy(accuracy);
    eval.set_test_loss(loss);
    eval.set_test_auc(auc);
    for (const auto& [name, value] : metrics) {
      (*eval.mutable_metrics())[py::cast<std::string>(name)] = py::cast<double>(value);
    }
    Call([&] { return session_->ReportEval(t, eval); });
  }

 private:
  template <typename F>
  void Call(F f) {
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = f();
    }
    Check(status);
  }

  std::unique_ptr<Session> session_;
};

py::array_t<int64_t> ExampleOrderOf(const std::string& job_json, const py::tuple& partition,
                                    int64_t num_examples) {
  JobSpec job;
  const auto parsed = google::protobuf::util::JsonStringToMessage(job_json, &job);
  if (!parsed.ok()) Raise(absl::InvalidArgumentError("job: " + parsed.ToString()));
  DataPartition p;
  p.set_index(py::cast<uint32_t>(partition[0]));
  p.set_count(py::cast<uint32_t>(partition[1]));
  p.set_epoch(py::cast<uint32_t>(partition[2]));
  const std::vector<int64_t> order = ExampleOrder(job, p, num_examples);
  py::array_t<int64_t> out(order.size());
  std::copy(order.begin(), order.end(), out.mutable_data());
  return out;
}

}  // namespace
}  // namespace fulcrum

PYBIND11_MODULE(_native, m) {
  using fulcrum::PySession;
  m.doc() = "Fulcrum's C++ worker library (worker/fulcrum_worker.h); use the fulcrum package.";
  static py::exception<std::runtime_error> error(m, "Error");
  fulcrum::error_type = error.ptr();

  py::class_<fulcrum::ConnectionOptions>(m, "ConnectionOptions")
      .def(py::init<>())
      .def_readwrite("coordinator", &fulcrum::ConnectionOptions::coordinator)
      .def_readwrite("worker_name", &fulcrum::ConnectionOptions::worker_name)
      .def_readwrite("auth_token", &fulcrum::ConnectionOptions::auth_token)
      .def_readwrite("tls_ca", &fulcrum::ConnectionOptions::tls_ca)
      .def_readwrite("tls_cert", &fulcrum::ConnectionOptions::tls_cert)
      .def_readwrite("tls_key", &fulcrum::ConnectionOptions::tls_key)
      .def_readwrite("tls_server_name", &fulcrum::ConnectionOptions::tls_server_name)
      .def_readwrite("max_attempts", &fulcrum::ConnectionOptions::max_attempts)
      .def_property(
          "rpc_timeout",
          [](const fulcrum::ConnectionOptions& o) { return absl::ToDoubleSeconds(o.rpc_timeout); },
          [](fulcrum::ConnectionOptions& o, double s) { o.rpc_timeout = absl::Seconds(s); })
      .def_property(
          "start_timeout",
          [](const fulcrum::ConnectionOptions& o) {
            return absl::ToDoubleSeconds(o.start_timeout);
          },
          [](fulcrum::ConnectionOptions& o, double s) { o.start_timeout = absl::Seconds(s); })
      .def_property(
          "max_backoff",
          [](const fulcrum::ConnectionOptions& o) { return absl::ToDoubleSeconds(o.max_backoff); },
          [](fulcrum::ConnectionOptions& o, double s) { o.max_backoff = absl::Seconds(s); });

  py::class_<PySession>(m, "Session")
      .def(py::init<const fulcrum::ConnectionOptions&>())
      .def("job_json", &PySession::job_json)
      .def_property_readonly("worker_id", &PySession::worker_id)
      .def("next_task", &PySession::NextTask)
      .def("pull", &PySession::Pull)
      .def("pull_for_eval", &PySession::PullForEval)
      .def("push", &PySession::Push)
      .def("push_pull", &PySession::PushPull)
      .def("complete", &PySession::Complete)
      .def("report_eval", &PySession::ReportEval);

  m.def("example_order", &fulcrum::ExampleOrderOf);
}
