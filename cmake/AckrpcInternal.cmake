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

# ackrpc_protoc_ackrpc(<out-var> [TABLES] PROTO_ROOT <dir> OUT_DIR <dir>
#                      PROTOS <rel.proto>...)
# Runs protoc with this tree's protoc-gen-ackrpc on each PROTOS file (a path
# relative to PROTO_ROOT) and sets <out-var> to the generated
# .ackrpc.c/.ackrpc.h files under OUT_DIR: the library's built-in services
# and the ackrpc tool use the project's own generator for their tables.
# TABLES: only the tables (the library registers the methods itself).
# (ackrpc_generate(), for users, also brings the well-known types.)
function(ackrpc_protoc_ackrpc out_var)
  cmake_parse_arguments(A "TABLES" "PROTO_ROOT;OUT_DIR" "PROTOS" ${ARGN})
  set(param "")
  if(A_TABLES)
    set(param "tables:")
  endif()
  set(outs)
  foreach(rel IN LISTS A_PROTOS)
    string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
    set(c "${A_OUT_DIR}/${stem}.ackrpc.c")
    set(h "${A_OUT_DIR}/${stem}.ackrpc.h")
    add_custom_command(
      OUTPUT "${c}" "${h}"
      COMMAND ${CMAKE_COMMAND} -E make_directory "${A_OUT_DIR}"
      COMMAND ${ACKRPC_PROTOC} "--plugin=protoc-gen-ackrpc=$<TARGET_FILE:protoc-gen-ackrpc>"
              "--ackrpc_out=${param}${A_OUT_DIR}" "-I${A_PROTO_ROOT}" "${A_PROTO_ROOT}/${rel}"
      DEPENDS "${A_PROTO_ROOT}/${rel}" protoc-gen-ackrpc
      COMMENT "protoc-gen-ackrpc ${rel}"
      VERBATIM)
    list(APPEND outs "${c}" "${h}")
  endforeach()
  set(${out_var} ${outs} PARENT_SCOPE)
endfunction()
