# The etcd v3 API as C++ and gRPC stubs, generated at build time from the
# .proto files Debian ships (golang-etcd-server-dev, with gogoproto from
# golang-github-gogo-protobuf-dev and google/api from the grpc-gateway
# package's copy of googleapis). Nothing of them is kept in the tree.
#
# Defines the static, position-independent target packlock_etcd_proto.

find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

set(gocode /usr/share/gocode/src CACHE PATH "Where Debian's Go packages keep their sources")
set(etcd_proto_sources
  etcd=${gocode}/go.etcd.io/etcd
  gogoproto=${gocode}/github.com/gogo/protobuf/gogoproto
  google/api=${gocode}/github.com/grpc-ecosystem/grpc-gateway/third_party/googleapis/google/api)

# rpc.proto imports "etcd/mvcc/...", "gogoproto/gogo.proto" and
# "google/api/annotations.proto": one import root with links of those names.
set(proto_root ${CMAKE_CURRENT_BINARY_DIR}/etcd-proto/import)
set(proto_out ${CMAKE_CURRENT_BINARY_DIR}/etcd-proto/gen)
file(MAKE_DIRECTORY ${proto_root}/google ${proto_out})
foreach(mapping IN LISTS etcd_proto_sources)
  string(REPLACE "=" ";" pair ${mapping})
  list(GET pair 0 name)
  list(GET pair 1 target)
  if(NOT EXISTS ${target})
    message(FATAL_ERROR "etcd .proto files: ${target} is missing (scripts/bootstrap.sh installs it)")
  endif()
  file(CREATE_LINK ${target} ${proto_root}/${name} SYMBOLIC)
endforeach()

set(messages
  etcd/mvcc/mvccpb/kv
  etcd/auth/authpb/auth
  gogoproto/gogo
  google/api/http
  google/api/annotations)
set(services etcd/etcdserver/etcdserverpb/rpc)

set(generated)
foreach(proto IN LISTS messages services)
  set(outputs ${proto_out}/${proto}.pb.cc ${proto_out}/${proto}.pb.h)
  set(plugin)
  if(proto IN_LIST services)
    list(APPEND outputs ${proto_out}/${proto}.grpc.pb.cc ${proto_out}/${proto}.grpc.pb.h)
    set(plugin --grpc_out=${proto_out} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN})
  endif()
  add_custom_command(
    OUTPUT ${outputs}
    COMMAND protobuf::protoc -I ${proto_root} -I ${Protobuf_INCLUDE_DIRS}
            --cpp_out=${proto_out} ${plugin} ${proto}.proto
    DEPENDS ${proto_root}/${proto}.proto
    COMMENT "Generating C++ for ${proto}.proto"
    VERBATIM)
  list(APPEND generated ${outputs})
endforeach()

add_library(packlock_etcd_proto STATIC ${generated})
set_target_properties(packlock_etcd_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
# Generated code: its warnings are not ours to fix.
target_compile_options(packlock_etcd_proto PRIVATE -w)
target_include_directories(packlock_etcd_proto SYSTEM PUBLIC $<BUILD_INTERFACE:${proto_out}>)
target_link_libraries(packlock_etcd_proto PUBLIC gRPC::grpc++ protobuf::libprotobuf)
