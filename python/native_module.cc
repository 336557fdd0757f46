// fulcrum._native: the C++ worker library (worker/fulcrum_worker.h) for
// Python. The worker protocol (registration, heartbeats, leases, clocks,
// retries, deadlines) stays in C++; Python sees a Session taking numpy
// arrays. Errors are raised as fulcrum._native.Error(code, message), which
// python/fulcrum/__init__.py turns into fulcrum.FulcrumError.
//
// Every call that may block releases the GIL: a training loop in another
// Python thread, and the session's heartbeat thread, keep running.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status_macros.h"
#include "common/data/ctr.h"
#include "common/data/line_range.h"
#include "google/protobuf/util/json_util.h"
#include "pybind11/numpy.h"
#include "pybind11/pybind11.h"
#include "pybind11/stl.h"
#include "worker/fulcrum_worker.h"
#include "worker/serving_client.h"

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

  // An evaluation reads rows without creating them: keys without a row
  // read the table's initial values.
  void PullForEval(const py::dict& dense, const py::dict& sparse) {
    PyBuffers params = ToBuffers(session_->job(), dense, sparse, /*writable=*/true);
    for (SparseBuffer& rows : params.buffers.sparse) rows.read_only = true;
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

// The first Python exception a PyWorkload met (kept to be raised again in
// the caller's thread once RunWorker returns). Touched only with the GIL.
struct PyErrorSlot {
  std::optional<py::error_already_set> first;
};

// A Python workload (fulcrum.Workload, behind fulcrum's _LoopAdapter, whose
// methods take and return plain values) driven by the C++ loop: RunWorker's
// thread calls it, each call under the GIL. The parameters are the Python
// arrays parameters() gave at configure: a step's pulled values are copied
// into them and its gradients copied out of what compute_gradients returns.
// A Python exception becomes the call's error (UNKNOWN; FAILED_PRECONDITION
// from configure, which refuses the job) and is kept in `errors` for the
// caller to raise.
class PyWorkload final : public Workload {
 public:
  PyWorkload(py::handle adapter, PyErrorSlot* errors)
      : adapter_(py::reinterpret_borrow<py::object>(adapter)), errors_(errors) {}
  ~PyWorkload() override {
    py::gil_scoped_acquire gil;
    params_.clear();
    adapter_ = py::object();
  }

  absl::Status Configure(const JobSpec& job) override {
    py::gil_scoped_acquire gil;
    return Guard(absl::StatusCode::kFailedPrecondition, [&]() -> absl::Status {
      job_ = job;
      py::dict params = adapter_.attr("configure")(JobJson(job));
      has_sparse_ = py::cast<bool>(adapter_.attr("has_sparse"));
      tensors_.clear();
      params_.clear();
      spans_.clear();
      for (const auto& [key, array] : params) {
        const std::string name = py::cast<std::string>(key);
        const TensorSpec* spec = nullptr;
        for (const TensorSpec& t : job.tensors()) {
          if (t.name() == name) spec = &t;
        }
        if (spec == nullptr) {
          return absl::FailedPreconditionError(
              absl::StrCat("parameters() names '", name, "', which is no dense tensor of the job"));
        }
        const std::vector<int64_t> shape(spec->shape().begin(), spec->shape().end());
        absl::Span<float> values = FloatsOf(array, "parameter " + name, /*writable=*/true, shape);
        int64_t elements = 1;
        for (int64_t d : shape) elements *= d;
        if (static_cast<int64_t>(values.size()) != elements) {
          return absl::FailedPreconditionError(absl::StrCat(
              "parameter ", name, " holds ", values.size(), " floats; the job's has ", elements));
        }
        tensors_.push_back(*spec);
        params_.push_back(py::reinterpret_borrow<py::object>(array));
        spans_.push_back(values);
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<int64_t> LoadPartition(const DataPartition& partition) override {
    py::gil_scoped_acquire gil;
    int64_t n = 0;
    FULCRUM_RETURN_IF_ERROR(Guard(absl::StatusCode::kUnknown, [&]() -> absl::Status {
      n = py::cast<int64_t>(
          adapter_.attr("load_partition")(partition.index(), partition.count(), partition.epoch()));
      return absl::OkStatus();
    }));
    return n;
  }

  void PlanStep(absl::Span<const int64_t> examples, ParameterBatch* batch) override {
    batch->tensors = tensors_;
    batch->sparse.clear();
    if (!has_sparse_) return;
    py::gil_scoped_acquire gil;
    // An error here is the step's: ComputeGradients returns it.
    plan_error_ = Guard(absl::StatusCode::kUnknown, [&]() -> absl::Status {
      py::dict keys = adapter_.attr("sparse_keys")(ExamplesArray(examples));
      for (const auto& [table, pair] : keys) {
        py::tuple keys_dim = py::cast<py::tuple>(pair);
        SparseRows rows;
        rows.table = py::cast<std::string>(table);
        KeyArray k = KeyArray::ensure(keys_dim[0]);
        if (!k) return absl::InvalidArgumentError("sparse_keys: keys are not integers");
        rows.keys.assign(k.data(), k.data() + k.size());
        rows.dim = py::cast<uint32_t>(keys_dim[1]);
        batch->sparse.push_back(std::move(rows));
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                          const ParameterBatch& params,
                                          ParameterBatch* grads) override {
    if (!plan_error_.ok()) return std::exchange(plan_error_, absl::OkStatus());
    if (params.dense.size() != spans_.size()) {
      return absl::InternalError("the step's parameters are not the workload's");
    }
    py::gil_scoped_acquire gil;
    for (size_t i = 0; i < spans_.size(); ++i) {
      if (params.dense[i].size() != spans_[i].size()) {
        return absl::InternalError("a pulled tensor's size differs from the workload's array");
      }
      std::copy(params.dense[i].begin(), params.dense[i].end(), spans_[i].begin());
    }
    double loss = 0;
    FULCRUM_RETURN_IF_ERROR(Guard(absl::StatusCode::kUnknown, [&]() -> absl::Status {
      py::dict rows;
      for (const SparseRows& r : params.sparse) {
        py::array_t<uint64_t> keys(r.keys.size());
        std::copy(r.keys.begin(), r.keys.end(), keys.mutable_data());
        rows[py::str(r.table)] = py::make_tuple(keys, RowsArray(r));
      }
      py::tuple result = adapter_.attr("compute")(ExamplesArray(examples), rows);
      loss = py::cast<double>(result[0]);
      py::dict dense = py::cast<py::dict>(result[1]);
      py::dict sparse = py::cast<py::dict>(result[2]);
      grads->tensors = tensors_;
      grads->dense.resize(tensors_.size());
      for (size_t i = 0; i < tensors_.size(); ++i) {
        const std::string& name = tensors_[i].name();
        if (!dense.contains(name)) {
          return absl::InvalidArgumentError(
              absl::StrCat("compute_gradients returned no gradient for tensor ", name));
        }
        const std::vector<int64_t> shape(tensors_[i].shape().begin(), tensors_[i].shape().end());
        absl::Span<float> g = FloatsOf(dense[py::str(name)], "gradient " + name, false, shape);
        grads->dense[i].assign(g.begin(), g.end());
      }
      grads->sparse.clear();
      for (const auto& [table, pair] : sparse) {
        py::tuple kv = py::cast<py::tuple>(pair);
        SparseRows rows;
        rows.table = py::cast<std::string>(table);
        KeyArray k = KeyArray::ensure(kv[0]);
        if (!k) return absl::InvalidArgumentError("compute_gradients: sparse keys not integers");
        rows.keys.assign(k.data(), k.data() + k.size());
        absl::Span<float> v = FloatsOf(kv[1], "gradient of table " + rows.table, false, {});
        rows.values.assign(v.begin(), v.end());
        rows.dim = rows.keys.empty() ? 0 : static_cast<uint32_t>(v.size() / rows.keys.size());
        grads->sparse.push_back(std::move(rows));
      }
      return absl::OkStatus();
    }));
    return loss;
  }

  absl::StatusOr<EvalResult> Evaluate(const PullFn& pull) override {
    py::gil_scoped_acquire gil;
    EvalResult eval;
    FULCRUM_RETURN_IF_ERROR(Guard(absl::StatusCode::kUnknown, [&]() -> absl::Status {
      // Refreshes parameters() with the current model; given {table: keys},
      // reads only those rows instead and returns {table: rows} (read only:
      // keys without a row read the table's initial values, none is
      // created).
      py::cpp_function pull_into_parameters(
          [this, &pull](py::object sparse) {
            ParameterBatch batch;
            if (sparse.is_none()) {
              batch.tensors = tensors_;
            } else {
              for (const auto& [table, keys] : py::cast<py::dict>(sparse)) {
                SparseRows rows;
                rows.table = py::cast<std::string>(table);
                rows.dim = static_cast<uint32_t>(TableDim(job_, rows.table));
                if (rows.dim == 0) {
                  Raise(absl::InvalidArgumentError(
                      absl::StrCat("the job has no sparse table '", rows.table, "'")));
                }
                KeyArray k = KeyArray::ensure(keys);
                if (!k) throw py::type_error("pull: keys must be integers");
                rows.keys.assign(k.data(), k.data() + k.size());
                rows.read_only = true;
                batch.sparse.push_back(std::move(rows));
              }
            }
            absl::Status pulled;
            {
              py::gil_scoped_release release;
              pulled = pull(&batch);
            }
            Check(pulled);
            if (batch.dense.size() != batch.tensors.size()) {
              Raise(absl::InternalError("the pulled tensors are not the workload's"));
            }
            for (size_t i = 0; i < batch.dense.size(); ++i) {
              if (batch.dense[i].size() != spans_[i].size()) {
                Raise(absl::InternalError(
                    "a pulled tensor's size differs from the workload's array"));
              }
              std::copy(batch.dense[i].begin(), batch.dense[i].end(), spans_[i].begin());
            }
            py::dict rows;
            for (SparseRows& r : batch.sparse) rows[py::str(r.table)] = RowsArray(r);
            return rows;
          },
          py::arg("sparse") = py::none());
      py::dict result = adapter_.attr("evaluate")(pull_into_parameters);
      auto number = [&](const char* key) {
        return result.contains(key) ? py::cast<double>(result[key]) : 0.0;
      };
      eval.set_test_accuracy(number("accuracy"));
      eval.set_test_loss(number("loss"));
      eval.set_test_auc(number("auc"));
      if (result.contains("metrics") && !result["metrics"].is_none()) {
        for (const auto& [name, value] : py::cast<py::dict>(result["metrics"])) {
          (*eval.mutable_metrics())[py::cast<std::string>(name)] = py::cast<double>(value);
        }
      }
      return absl::OkStatus();
    }));
    return eval;
  }

 private:
  // Runs `body` (under the GIL); a Python exception becomes an error of
  // `code` (a FulcrumError keeps its own code) and is kept for the caller.
  template <typename Body>
  absl::Status Guard(absl::StatusCode code, Body body) {
    try {
      return body();
    } catch (py::error_already_set& e) {
      absl::Status status(code, absl::StrCat("Python: ", e.what()));
      if (e.matches(py::handle(error_type))) {
        py::tuple args = py::cast<py::tuple>(e.value().attr("args"));
        absl::StatusCode fulcrum_code = absl::StatusCode::kUnknown;
        const std::string name = py::cast<std::string>(args[0]);
        for (int c = 0; c <= 16; ++c) {
          if (absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) == name) {
            fulcrum_code = static_cast<absl::StatusCode>(c);
          }
        }
        status = absl::Status(fulcrum_code, py::cast<std::string>(args[1]));
      }
      if (!errors_->first.has_value()) errors_->first.emplace(std::move(e));
      return status;
    } catch (const std::exception& e) {  // pybind11's casts and builtin exceptions
      return absl::Status(code, absl::StrCat("Python: ", e.what()));
    }
  }

  // The pulled rows as a [keys, dim] array.
  static py::array_t<float> RowsArray(const SparseRows& r) {
    py::array_t<float> values(
        {static_cast<py::ssize_t>(r.keys.size()), static_cast<py::ssize_t>(r.dim)});
    std::copy(r.values.begin(), r.values.end(), values.mutable_data());
    return values;
  }

  static py::array_t<int64_t> ExamplesArray(absl::Span<const int64_t> examples) {
    py::array_t<int64_t> out(examples.size());
    std::copy(examples.begin(), examples.end(), out.mutable_data());
    return out;
  }

  py::object adapter_;
  PyErrorSlot* const errors_;
  bool has_sparse_ = false;
  JobSpec job_;                           // of the last Configure
  std::vector<TensorSpec> tensors_;       // what parameters() holds, in its order
  std::vector<py::object> params_;        // the arrays (kept alive)
  std::vector<absl::Span<float>> spans_;  // their memory
  absl::Status plan_error_;
};

// fulcrum.run_worker: RunWorker over a Python workload. Raises the first
// Python exception the workload raised, or FulcrumError for RunWorker's
// error.
void RunPyWorker(const ConnectionOptions& connection, py::object adapter, int metrics_port) {
  WorkerOptions options;
  options.connection = connection;
  options.metrics_port = metrics_port;
  PyErrorSlot errors;
  const py::handle handle = adapter;  // alive in this frame for the whole run
  absl::Status status;
  {
    py::gil_scoped_release release;
    status = RunWorker(
        options, [handle, &errors](const JobSpec&) -> absl::StatusOr<std::unique_ptr<Workload>> {
          py::gil_scoped_acquire gil;
          return std::unique_ptr<Workload>(std::make_unique<PyWorkload>(handle, &errors));
        });
  }
  if (errors.first.has_value() && !status.ok()) {
    errors.first->restore();
    throw py::error_already_set();
  }
  Check(status);
}

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

// A vector's contents as a numpy array of `shape`, without a copy: the
// array owns the vector.
template <typename T>
py::array_t<T> ArrayOwning(std::vector<T> values, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owned->data(), free_when_done);
}

// fulcrum.serving.Client: the native ServingClient, arrays in and out.
class PyServingClient {
 public:
  explicit PyServingClient(const ServingClientOptions& options) {
    absl::StatusOr<std::unique_ptr<ServingClient>> client = ServingClient::Connect(options);
    Check(client.status());
    client_ = *std::move(client);
  }
  // (rows float32 [n, dim], found bool [n]) for `ids` (uint64, any shape:
  // flattened).
  py::tuple Lookup(const std::string& table, const KeyArray& ids, uint32_t dim) {
    const auto* begin = static_cast<const uint64_t*>(ids.data());
    std::vector<uint64_t> keys(begin, begin + ids.size());
    std::vector<float> rows;
    std::vector<bool> found;
    uint64_t checkpoint = 0;
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = client_->Lookup(table, keys, &rows, dim, &found, &checkpoint);
    }
    Check(status);
    const py::ssize_t n = static_cast<py::ssize_t>(keys.size());
    const py::ssize_t width = n == 0 ? dim : static_cast<py::ssize_t>(rows.size()) / n;
    std::vector<uint8_t> has(found.begin(), found.end());
    return py::make_tuple(ArrayOwning(std::move(rows), {n, width}),
                          ArrayOwning(std::move(has), {n}).attr("astype")("bool"), checkpoint);
  }
  // {table: (rows [n, dim], found [n])} for {table: ids}, from one
  // checkpoint; and the checkpoint.
  py::tuple LookupBatch(const py::dict& lookups) {
    std::vector<TableLookup> requests;
    for (const auto& [table, ids] : lookups) {
      const KeyArray keys = py::cast<KeyArray>(ids);
      const auto* begin = static_cast<const uint64_t*>(keys.data());
      requests.push_back(TableLookup{py::cast<std::string>(table),
                                     std::vector<uint64_t>(begin, begin + keys.size())});
    }
    std::vector<TableRows> results;
    uint64_t checkpoint = 0;
    absl::Status status;
    {
      py::gil_scoped_release release;
      status = client_->LookupBatch(requests, &results, &checkpoint);
    }
    Check(status);
    py::dict out;
    for (size_t i = 0; i < requests.size(); ++i) {
      const py::ssize_t n = static_cast<py::ssize_t>(requests[i].ids.size());
      std::vector<uint8_t> has(results[i].found.begin(), results[i].found.end());
      out[py::str(requests[i].table)] =
          py::make_tuple(ArrayOwning(std::move(results[i].rows), {n, py::ssize_t{results[i].dim}}),
                         ArrayOwning(std::move(has), {n}).attr("astype")("bool"));
    }
    return py::make_tuple(out, checkpoint);
  }
  py::dict ReadTensors(const std::vector<std::string>& names) {
    absl::StatusOr<std::map<std::string, ServedTensorValues>> tensors;
    {
      py::gil_scoped_release release;
      tensors = client_->ReadTensors(names);
    }
    Check(tensors.status());
    py::dict out;
    for (auto& [name, t] : *tensors) {
      std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
      out[py::str(name)] = ArrayOwning(std::move(t.values), shape);
    }
    return out;
  }
  std::string StatusJson() {
    absl::StatusOr<std::string> json;
    {
      py::gil_scoped_release release;
      json = client_->StatusJson();
    }
    Check(json.status());
    return *json;
  }

 private:
  std::unique_ptr<ServingClient> client_;
};

// fulcrum.datasets.ctr: partition `index` of `count` of a click log (by
// byte range, common/data/ctr.h) as (labels [n], numeric [n, N], ids
// [n, C]: int64, the 64 bits of each id).
py::tuple ReadCtrPartition(const std::string& path, uint32_t index, uint32_t count,
                           int numeric_fields, int categorical_fields) {
  if (count == 0 || index >= count) {
    Raise(absl::InvalidArgumentError(
        absl::StrCat("partition ", index, " of ", count, ": need index < count")));
  }
  absl::StatusOr<CtrDataset> data;
  {
    py::gil_scoped_release release;
    absl::StatusOr<uint64_t> size = FileSize(path);
    if (!size.ok()) {
      data = size.status();
    } else {
      data = ReadCtr(path, CtrFormat{numeric_fields, categorical_fields}, *size * index / count,
                     *size * (index + 1) / count);
    }
  }
  Check(data.status());
  const py::ssize_t n = data->size();
  std::vector<int64_t> ids(data->ids.begin(), data->ids.end());
  return py::make_tuple(ArrayOwning(std::move(data->labels), {n}),
                        ArrayOwning(std::move(data->numeric), {n, numeric_fields}),
                        ArrayOwning(std::move(ids), {n, categorical_fields}));
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

  py::class_<fulcrum::ServingClientOptions>(m, "ServingClientOptions")
      .def(py::init<>())
      .def_readwrite("address", &fulcrum::ServingClientOptions::address)
      .def_readwrite("auth_token", &fulcrum::ServingClientOptions::auth_token)
      .def_readwrite("tls_ca", &fulcrum::ServingClientOptions::tls_ca)
      .def_readwrite("tls_cert", &fulcrum::ServingClientOptions::tls_cert)
      .def_readwrite("tls_key", &fulcrum::ServingClientOptions::tls_key)
      .def_readwrite("tls_server_name", &fulcrum::ServingClientOptions::tls_server_name)
      .def_property(
          "timeout",
          [](const fulcrum::ServingClientOptions& o) { return absl::ToDoubleSeconds(o.timeout); },
          [](fulcrum::ServingClientOptions& o, double s) { o.timeout = absl::Seconds(s); });
  py::class_<fulcrum::PyServingClient>(m, "ServingClient")
      .def(py::init<const fulcrum::ServingClientOptions&>())
      .def("lookup", &fulcrum::PyServingClient::Lookup)
      .def("lookup_batch", &fulcrum::PyServingClient::LookupBatch)
      .def("read_tensors", &fulcrum::PyServingClient::ReadTensors)
      .def("status_json", &fulcrum::PyServingClient::StatusJson);

  m.def("example_order", &fulcrum::ExampleOrderOf);
  m.def("read_ctr", &fulcrum::ReadCtrPartition, py::arg("path"), py::arg("index"), py::arg("count"),
        py::arg("numeric_fields"), py::arg("categorical_fields"));
  m.def("run_worker", &fulcrum::RunPyWorker, py::arg("connection"), py::arg("adapter"),
        py::arg("metrics_port") = -1);
}
