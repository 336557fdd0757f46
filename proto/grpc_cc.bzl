"""cc_grpc_library: C++ messages and gRPC stubs from one .proto.

Bazel 4.2.3's native proto rules need the protobuf Bazel repository, which an
offline machine cannot fetch; this runs Debian's protoc and grpc_cpp_plugin in
a genrule and wraps the four generated files in a cc_library. Generated
headers are included as "proto/<name>.pb.h" and "proto/<name>.grpc.pb.h".
"""

def cc_grpc_library(name, src, deps = [], **kwargs):
    base = src[:-len(".proto")]
    outs = [
        base + ".pb.h",
        base + ".pb.cc",
        base + ".grpc.pb.h",
        base + ".grpc.pb.cc",
    ]
    native.genrule(
        name = name + "_gen",
        srcs = [src],
        outs = outs,
        cmd = " ".join([
            "protoc",
            "--proto_path=.",
            "--cpp_out=$(GENDIR)",
            "--grpc_out=$(GENDIR)",
            "--plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin)",
            "$(location %s)" % src,
        ]),
    )
    native.cc_library(
        name = name,
        srcs = [base + ".pb.cc", base + ".grpc.pb.cc"],
        hdrs = [base + ".pb.h", base + ".grpc.pb.h"],
        deps = deps + ["@system//:grpc", "@system//:protobuf"],
        **kwargs
    )
