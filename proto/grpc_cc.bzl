"""C++ libraries from .proto files: messages alone, and gRPC stubs apart.

Bazel 4.2.3's native proto rules need the protobuf Bazel repository, which an
offline machine cannot fetch; these run Debian's protoc (and grpc_cpp_plugin)
in a genrule and wrap the generated files in a cc_library. Generated headers
are included as "proto/<name>.pb.h" and "proto/<name>.grpc.pb.h".

Code that only reads or writes messages depends on the messages target and
links no gRPC.
"""

def cc_proto_messages(name, src, imports = [], deps = [], **kwargs):
    """The C++ messages of `src`.

    Args:
      name: the cc_library.
      src: the .proto file.
      imports: the .proto files `src` imports.
      deps: the cc_proto_messages targets of those imports.
      **kwargs: passed to the cc_library (visibility, ...).
    """
    base = src[:-len(".proto")]
    native.genrule(
        name = name + "_gen",
        srcs = [src] + imports,
        outs = [base + ".pb.h", base + ".pb.cc"],
        cmd = "protoc --proto_path=. --cpp_out=$(GENDIR) $(location %s)" % src,
    )
    native.cc_library(
        name = name,
        srcs = [base + ".pb.cc"],
        hdrs = [base + ".pb.h"],
        deps = deps + ["@system//:protobuf"],
        **kwargs
    )

def cc_grpc_stubs(name, src, messages, imports = [], **kwargs):
    """The gRPC service classes and client stubs of `src`.

    Args:
      name: the cc_library.
      src: the .proto file, declaring at least one service.
      messages: the cc_proto_messages target of `src`.
      imports: the .proto files `src` imports.
      **kwargs: passed to the cc_library.
    """
    base = src[:-len(".proto")]
    native.genrule(
        name = name + "_gen",
        srcs = [src] + imports,
        outs = [base + ".grpc.pb.h", base + ".grpc.pb.cc"],
        cmd = " ".join([
            "protoc",
            "--proto_path=.",
            "--grpc_out=$(GENDIR)",
            "--plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin)",
            "$(location %s)" % src,
        ]),
    )
    native.cc_library(
        name = name,
        srcs = [base + ".grpc.pb.cc"],
        hdrs = [base + ".grpc.pb.h"],
        deps = [messages, "@system//:grpc", "@system//:protobuf"],
        **kwargs
    )
