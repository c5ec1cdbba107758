# Build helpers used inside this tree only.

# ackrpc_protoc_c(<out-var> PROTO_ROOT <dir> OUT_DIR <dir> PROTOS <rel.proto>...)
# Runs protoc with protoc-c's plugin on each PROTOS file (a path relative to
# PROTO_ROOT) and sets <out-var> to the generated .pb-c.c/.pb-c.h files, which
# land under OUT_DIR with the same relative path.
function(ackrpc_protoc_c out_var)
  cmake_parse_arguments(A "" "PROTO_ROOT;OUT_DIR" "PROTOS" ${ARGN})
  set(outs)
  foreach(rel IN LISTS A_PROTOS)
    string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
    set(c "${A_OUT_DIR}/${stem}.pb-c.c")
    set(h "${A_OUT_DIR}/${stem}.pb-c.h")
    add_custom_command(
      OUTPUT "${c}" "${h}"
      COMMAND ${CMAKE_COMMAND} -E make_directory "${A_OUT_DIR}"
      COMMAND ${ACKRPC_PROTOC} "--plugin=protoc-gen-c=${ACKRPC_PROTOC_GEN_C}"
              "--c_out=${A_OUT_DIR}" "-I${A_PROTO_ROOT}" "${A_PROTO_ROOT}/${rel}"
      DEPENDS "${A_PROTO_ROOT}/${rel}"
      COMMENT "protoc-c ${rel}"
      VERBATIM)
    list(APPEND outs "${c}" "${h}")
  endforeach()
  set(${out_var} ${outs} PARENT_SCOPE)
endfunction()
