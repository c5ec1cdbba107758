# AckrpcGenerate.cmake: ackrpc_generate(), which turns .proto files into C code
# for a target: protoc-c's messages (NAME.pb-c.*) and protoc-gen-ackrpc's
# typed stubs and handler tables (NAME.ackrpc.*). Part of the installed CMake
# package (find_package(ackrpc) includes it) and used in ackrpc's own tree.
#
#   ackrpc_generate(TARGET <target> PROTOS <file.proto>...
#                   [IMPORT_DIRS <dir>...] [OUT_DIR <dir>]
#                   [OUT_VAR <var>] [FUZZ_SOURCES <var>])
#
# TARGET       an existing target; the generated .c files are added to its
#              sources and OUT_DIR to its include directories (PUBLIC), and
#              it is linked (keyword signature, PUBLIC) to ackrpc_wkt, a
#              static library made once per project with the C code of
#              google/protobuf/*.proto (Debian ships none) and
#              ackrpc/options.proto. Link ackrpc::ackrpc or
#              ackrpc::ackrpc_static to it yourself.
# PROTOS       the .proto files (relative to the current source directory, or
#              absolute). Each must lie under one of IMPORT_DIRS; its import
#              name (the path below that directory) names the outputs:
#              a/b.proto -> OUT_DIR/a/b.pb-c.{c,h} and OUT_DIR/a/b.ackrpc.{c,h}.
# IMPORT_DIRS  protoc's -I directories. Default: the directories of PROTOS.
#              ackrpc's own .proto directory (ackrpc/options.proto) and
#              protobuf's (google/protobuf/*.proto) are always added.
# OUT_DIR      where to generate. Default: <current binary dir>/ackrpc-gen/<target>.
# OUT_VAR      set to the list of generated files.
# FUZZ_SOURCES also generate NAME.ackrpc-fuzz.c (a libFuzzer entry per file)
#              and set <var> to them; no target is made for them.
#
# Imports: the C code of a file PROTOS imports is generated too, unless it is
# a well-known type (in ackrpc_wkt) or an earlier ackrpc_generate() call for a
# library target generated it (then that library is linked instead). So call
# ackrpc_generate() for a library before the targets whose .proto import its
# files. Imports are found when CMake configures (protoc --dependency_out),
# and CMake reconfigures when a .proto changes.
#
# Fuzzing: with -DACKRPC_GENERATE_FUZZ=ON (needs clang), each call also adds,
# per file of PROTOS, an executable <target>_fuzz_<file> built with
# -fsanitize=fuzzer around NAME.ackrpc-fuzz.c. See docs/GENERATOR.md.
#
# Where the tools come from: in ackrpc's tree, the global properties that
# tools/protoc-gen-ackrpc/CMakeLists.txt sets; after find_package(ackrpc), the
# imported target ackrpc::protoc-gen-ackrpc and the ackrpc include directory
# (where ackrpc/options.proto is installed). protoc and protoc-gen-c are
# found on PATH (ACKRPC_PROTOC, ACKRPC_PROTOC_GEN_C override).
include_guard(GLOBAL)

option(ACKRPC_GENERATE_FUZZ
       "ackrpc_generate(): add libFuzzer executables for the generated services (clang)"
       OFF)

# Sets in the caller's scope: _ackrpc_protoc, _ackrpc_protoc_gen_c,
# _ackrpc_plugin (path or generator expression), _ackrpc_plugin_dep (what to
# DEPEND on), _ackrpc_proto_dir, _ackrpc_protobuf_dir.
macro(_ackrpc_generate_tools)
  if(NOT ACKRPC_PROTOC)
    find_program(ACKRPC_PROTOC protoc)
  endif()
  if(NOT ACKRPC_PROTOC_GEN_C)
    find_program(ACKRPC_PROTOC_GEN_C protoc-gen-c)
  endif()
  if(NOT ACKRPC_PROTOC OR NOT ACKRPC_PROTOC_GEN_C)
    message(FATAL_ERROR "ackrpc_generate: needs protoc and protoc-gen-c (Debian: "
                        "protobuf-compiler, protobuf-c-compiler)")
  endif()
  set(_ackrpc_protoc "${ACKRPC_PROTOC}")
  set(_ackrpc_protoc_gen_c "${ACKRPC_PROTOC_GEN_C}")

  get_property(_ackrpc_plugin_dep GLOBAL PROPERTY ACKRPC_GENERATE_PLUGIN_TARGET)
  if(_ackrpc_plugin_dep)
    set(_ackrpc_plugin "$<TARGET_FILE:${_ackrpc_plugin_dep}>")
  elseif(TARGET ackrpc::protoc-gen-ackrpc)
    set(_ackrpc_plugin "$<TARGET_FILE:ackrpc::protoc-gen-ackrpc>")
    set(_ackrpc_plugin_dep ackrpc::protoc-gen-ackrpc)
  else()
    find_program(ACKRPC_PROTOC_GEN_ACKRPC protoc-gen-ackrpc)
    if(NOT ACKRPC_PROTOC_GEN_ACKRPC)
      message(FATAL_ERROR "ackrpc_generate: protoc-gen-ackrpc not found "
                          "(find_package(ackrpc) first, or set ACKRPC_PROTOC_GEN_ACKRPC)")
    endif()
    set(_ackrpc_plugin "${ACKRPC_PROTOC_GEN_ACKRPC}")
    set(_ackrpc_plugin_dep "${ACKRPC_PROTOC_GEN_ACKRPC}")
  endif()

  get_property(_ackrpc_proto_dir GLOBAL PROPERTY ACKRPC_GENERATE_PROTO_DIR)
  if(NOT _ackrpc_proto_dir AND ACKRPC_PROTO_DIR)
    set(_ackrpc_proto_dir "${ACKRPC_PROTO_DIR}")
  endif()
  if(NOT _ackrpc_proto_dir)
    foreach(_ackrpc_t IN ITEMS ackrpc::ackrpc ackrpc::ackrpc_static)
      if(TARGET ${_ackrpc_t} AND NOT _ackrpc_proto_dir)
        get_target_property(_ackrpc_incs ${_ackrpc_t} INTERFACE_INCLUDE_DIRECTORIES)
        foreach(_ackrpc_i IN LISTS _ackrpc_incs)
          if(EXISTS "${_ackrpc_i}/ackrpc/options.proto")
            set(_ackrpc_proto_dir "${_ackrpc_i}")
            break()
          endif()
        endforeach()
      endif()
    endforeach()
  endif()
  if(NOT _ackrpc_proto_dir)
    message(FATAL_ERROR "ackrpc_generate: ackrpc/options.proto not found "
                        "(set ACKRPC_PROTO_DIR to the directory that holds ackrpc/)")
  endif()

  if(NOT ACKRPC_PROTOBUF_INCLUDE_DIR)
    get_filename_component(_ackrpc_protoc_prefix "${ACKRPC_PROTOC}" DIRECTORY)
    find_path(ACKRPC_PROTOBUF_INCLUDE_DIR google/protobuf/descriptor.proto
              HINTS "${_ackrpc_protoc_prefix}/../include")
  endif()
  if(NOT ACKRPC_PROTOBUF_INCLUDE_DIR)
    message(FATAL_ERROR "ackrpc_generate: google/protobuf/descriptor.proto not found "
                        "(Debian: libprotobuf-dev; or set ACKRPC_PROTOBUF_INCLUDE_DIR)")
  endif()
  set(_ackrpc_protobuf_dir "${ACKRPC_PROTOBUF_INCLUDE_DIR}")
endmacro()

# ackrpc_wkt: C code for the well-known types, ackrpc/options.proto and
# ackrpc/fd.proto (descriptor fields), made
# once per project, in the directory of the first ackrpc_generate() call.
function(_ackrpc_generate_wkt)
  if(TARGET ackrpc_wkt)
    return()
  endif()
  _ackrpc_generate_tools()
  set(out "${CMAKE_CURRENT_BINARY_DIR}/ackrpc-gen/wkt")
  set(files)
  set(names)
  # The well-known types, when present. (A variable of the including file
  # would not be visible from other directories: keep the list here.)
  foreach(w IN ITEMS any api descriptor duration empty field_mask source_context
                     struct timestamp type wrappers)
    if(EXISTS "${_ackrpc_protobuf_dir}/google/protobuf/${w}.proto")
      list(APPEND names "google/protobuf/${w}.proto")
      list(APPEND files "${out}/google/protobuf/${w}.pb-c.c" "${out}/google/protobuf/${w}.pb-c.h")
    endif()
  endforeach()
  list(APPEND names "ackrpc/options.proto" "ackrpc/fd.proto")
  list(APPEND files "${out}/ackrpc/options.pb-c.c" "${out}/ackrpc/options.pb-c.h"
                    "${out}/ackrpc/fd.pb-c.c" "${out}/ackrpc/fd.pb-c.h")
  add_custom_command(
    OUTPUT ${files}
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${out}"
    COMMAND "${_ackrpc_protoc}" "--plugin=protoc-gen-c=${_ackrpc_protoc_gen_c}"
            "-I${_ackrpc_proto_dir}" "-I${_ackrpc_protobuf_dir}" "--c_out=${out}" ${names}
    DEPENDS "${_ackrpc_proto_dir}/ackrpc/options.proto" "${_ackrpc_proto_dir}/ackrpc/fd.proto"
    COMMENT "protoc-c: the well-known types, ackrpc/options.proto and ackrpc/fd.proto"
    VERBATIM)
  add_library(ackrpc_wkt STATIC ${files})
  set_target_properties(ackrpc_wkt PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_include_directories(ackrpc_wkt PUBLIC "${out}")
  if(TARGET PkgConfig::PROTOBUF_C)
    target_link_libraries(ackrpc_wkt PUBLIC PkgConfig::PROTOBUF_C)
  else()
    target_link_libraries(ackrpc_wkt PUBLIC protobuf-c)
  endif()
  foreach(nm IN LISTS names)
    set_property(GLOBAL PROPERTY "ACKRPC_GENERATE_OWNER_${nm}" ackrpc_wkt)
  endforeach()
endfunction()

# Sets <out_var> to the import name of <file> (absolute): its path below the
# first of <dirs> that holds it, or "" if none does.
function(_ackrpc_import_name out_var file dirs)
  foreach(d IN LISTS dirs)
    file(RELATIVE_PATH rel "${d}" "${file}")
    if(NOT rel MATCHES "^\\.\\./" AND NOT IS_ABSOLUTE "${rel}")
      set(${out_var} "${rel}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  set(${out_var} "" PARENT_SCOPE)
endfunction()

function(ackrpc_generate)
  cmake_parse_arguments(A "" "TARGET;OUT_DIR;OUT_VAR;FUZZ_SOURCES" "PROTOS;IMPORT_DIRS"
                        ${ARGN})
  if(A_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "ackrpc_generate: unknown arguments: ${A_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT A_TARGET OR NOT TARGET "${A_TARGET}")
    message(FATAL_ERROR "ackrpc_generate: TARGET must name an existing target")
  endif()
  if(NOT A_PROTOS)
    message(FATAL_ERROR "ackrpc_generate(TARGET ${A_TARGET}): no PROTOS")
  endif()
  _ackrpc_generate_tools()
  _ackrpc_generate_wkt()
  set(out "${A_OUT_DIR}")
  if(NOT out)
    set(out "${CMAKE_CURRENT_BINARY_DIR}/ackrpc-gen/${A_TARGET}")
  endif()
  get_filename_component(out "${out}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")

  # Absolute PROTOS and import directories.
  set(protos)
  set(default_dirs)
  foreach(p IN LISTS A_PROTOS)
    get_filename_component(p "${p}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    if(NOT EXISTS "${p}")
      message(FATAL_ERROR "ackrpc_generate(TARGET ${A_TARGET}): ${p} does not exist")
    endif()
    list(APPEND protos "${p}")
    get_filename_component(d "${p}" DIRECTORY)
    list(APPEND default_dirs "${d}")
  endforeach()
  set(dirs)
  if(A_IMPORT_DIRS)
    foreach(d IN LISTS A_IMPORT_DIRS)
      get_filename_component(d "${d}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
      list(APPEND dirs "${d}")
    endforeach()
  else()
    set(dirs ${default_dirs})
  endif()
  list(APPEND dirs "${_ackrpc_proto_dir}" "${_ackrpc_protobuf_dir}")
  list(REMOVE_DUPLICATES dirs)
  set(include_args)
  foreach(d IN LISTS dirs)
    list(APPEND include_args "-I${d}")
  endforeach()

  # Import names of PROTOS.
  set(names)
  foreach(p IN LISTS protos)
    _ackrpc_import_name(import_name "${p}" "${dirs}")
    if(NOT import_name)
      message(FATAL_ERROR "ackrpc_generate(TARGET ${A_TARGET}): ${p} is not under any "
                          "of IMPORT_DIRS (${dirs})")
    endif()
    list(APPEND names "${import_name}")
  endforeach()

  # What PROTOS import, found now so that the outputs are known.
  set(work "${out}/.ackrpc")
  file(MAKE_DIRECTORY "${work}")
  # protoc writes a dependency file for one input file at a time.
  set(deps)
  foreach(p IN LISTS protos)
    execute_process(
      COMMAND "${_ackrpc_protoc}" ${include_args} "--dependency_out=${work}/deps.d"
              "--descriptor_set_out=${work}/configure.pb" "${p}"
      RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "ackrpc_generate(TARGET ${A_TARGET}): protoc failed:\n${err}")
    endif()
    file(READ "${work}/deps.d" d)
    string(REGEX REPLACE "^[^\n]*\\.pb:" "" d "${d}")
    string(REPLACE "\\\n" " " d "${d}")
    string(REGEX REPLACE "[ \t\r\n]+" ";" d "${d}")
    list(APPEND deps ${d})
  endforeach()
  list(REMOVE_DUPLICATES deps)
  set(dep_files)
  set(extra_names)
  set(link_owners)
  foreach(f IN LISTS deps)
    if(f STREQUAL "")
      continue()
    endif()
    get_filename_component(f "${f}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND dep_files "${f}")
    _ackrpc_import_name(import_name "${f}" "${dirs}")
    if(NOT import_name OR import_name IN_LIST names)
      continue()
    endif()
    get_property(owner GLOBAL PROPERTY "ACKRPC_GENERATE_OWNER_${import_name}")
    set(owner_is_library FALSE)
    if(owner AND TARGET "${owner}")
      get_target_property(type "${owner}" TYPE)
      if(type MATCHES "LIBRARY$")
        set(owner_is_library TRUE)
      endif()
    endif()
    if(owner_is_library)
      if(NOT owner STREQUAL "ackrpc_wkt")
        list(APPEND link_owners "${owner}")
      endif()
    else()
      list(APPEND extra_names "${import_name}")
    endif()
  endforeach()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${protos} ${dep_files})

  # Outputs.
  set(sources)
  set(headers)
  set(fuzz)
  set(param "")
  if(A_FUZZ_SOURCES OR ACKRPC_GENERATE_FUZZ)
    set(param "fuzz:")
  endif()
  foreach(nm IN LISTS names extra_names)
    string(REGEX REPLACE "\\.proto$" "" stem "${nm}")
    list(APPEND sources "${out}/${stem}.pb-c.c")
    list(APPEND headers "${out}/${stem}.pb-c.h")
    if(nm IN_LIST names)
      list(APPEND sources "${out}/${stem}.ackrpc.c")
      list(APPEND headers "${out}/${stem}.ackrpc.h")
      if(param)
        list(APPEND fuzz "${out}/${stem}.ackrpc-fuzz.c")
      endif()
    endif()
  endforeach()

  add_custom_command(
    OUTPUT ${sources} ${headers} ${fuzz}
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${work}"
    COMMAND "${_ackrpc_protoc}" "--plugin=protoc-gen-ackrpc=${_ackrpc_plugin}"
            ${include_args} --include_imports "--descriptor_set_out=${work}/full.pb"
            "--ackrpc_out=${param}${out}" ${protos}
    COMMAND "${_ackrpc_plugin}" --strip-services "${work}/full.pb" "${work}/stripped.pb"
    COMMAND "${_ackrpc_protoc}" "--plugin=protoc-gen-c=${_ackrpc_protoc_gen_c}"
            "--descriptor_set_in=${work}/stripped.pb" "--c_out=${out}" ${names}
            ${extra_names}
    DEPENDS ${protos} ${dep_files} ${_ackrpc_plugin_dep}
    COMMENT "ackrpc_generate(${A_TARGET}): ${names}"
    VERBATIM)

  target_sources(${A_TARGET} PRIVATE ${sources} ${headers})
  target_include_directories(${A_TARGET} PUBLIC "$<BUILD_INTERFACE:${out}>")
  # PUBLIC: the generated headers include the well-known types' and imports'.
  target_link_libraries(${A_TARGET} PUBLIC ackrpc_wkt ${link_owners})
  get_target_property(type "${A_TARGET}" TYPE)
  if(type MATCHES "LIBRARY$")
    foreach(nm IN LISTS names extra_names)
      set_property(GLOBAL PROPERTY "ACKRPC_GENERATE_OWNER_${nm}" "${A_TARGET}")
    endforeach()
  endif()

  if(ACKRPC_GENERATE_FUZZ)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
      message(FATAL_ERROR "ACKRPC_GENERATE_FUZZ=ON needs clang "
                          "(configure with -DCMAKE_C_COMPILER=clang)")
    endif()
    set(runtime ackrpc::ackrpc_static)
    if(NOT TARGET ackrpc::ackrpc_static)
      set(runtime ackrpc::ackrpc)
    endif()
    foreach(z IN LISTS fuzz)
      file(RELATIVE_PATH rel "${out}" "${z}")
      string(REGEX REPLACE "\\.ackrpc-fuzz\\.c$" "" rel "${rel}")
      string(MAKE_C_IDENTIFIER "${rel}" id)
      set(exe "${A_TARGET}_fuzz_${id}")
      add_executable(${exe} "${z}" ${sources})
      target_include_directories(${exe} PRIVATE "${out}")
      target_link_libraries(${exe} PRIVATE ackrpc_wkt ${link_owners} ${runtime})
      target_compile_options(${exe} PRIVATE -fsanitize=fuzzer)
      target_link_options(${exe} PRIVATE -fsanitize=fuzzer)
    endforeach()
  endif()

  if(A_OUT_VAR)
    set(${A_OUT_VAR} ${sources} ${headers} ${fuzz} PARENT_SCOPE)
  endif()
  if(A_FUZZ_SOURCES)
    set(${A_FUZZ_SOURCES} ${fuzz} PARENT_SCOPE)
  endif()
endfunction()
