# Install rules: public headers, libackrpc and libackrpc-outbox (shared +
# static), the CMake package (find_package(ackrpc) -> ackrpc::ackrpc,
# ackrpc::ackrpc_static, ackrpc::outbox, ackrpc::outbox_static), ackrpc.pc
# and ackrpc-outbox.pc.
# Not here: the tools' own install rules, which tools/CMakeLists.txt may add to
# the export set ackrpcTargets (it is processed before this file).
#
# Both the CMake package and ackrpc.pc are relocatable: they locate the
# install prefix from their own position, so `cmake --install --prefix DIR`,
# DESTDIR staging and a moved tree all work without reconfiguring.
include(CMakePackageConfigHelpers)

set(ACKRPC_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/ackrpc"
    CACHE STRING "Where the CMake package files of ackrpc are installed")
set(ACKRPC_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
    CACHE STRING "Where ackrpc.pc is installed")

# The public API: include/ackrpc/*.h only. protoc-c's wire.pb-c.h lives in the
# build tree (gen/) and is deliberately not installed.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/ackrpc"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        COMPONENT Development
        FILES_MATCHING PATTERN "*.h")

# The framework's own .proto files (wire, reflection, bench, options), for
# protoc users and for tools that talk to any ackrpc server without its
# sources: -I <datadir>/ackrpc/proto keeps their imports ("ackrpc/....proto").
file(GLOB _ackrpc_protos CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/proto/ackrpc/*.proto")
install(FILES ${_ackrpc_protos} DESTINATION "${CMAKE_INSTALL_DATADIR}/ackrpc/proto/ackrpc"
        COMPONENT Development)

install(TARGETS ackrpc_shared ackrpc_static ackrpc_outbox_shared ackrpc_outbox_static
        EXPORT ackrpcTargets
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
          COMPONENT Runtime NAMELINK_COMPONENT Development
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT Development
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT Runtime
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(EXPORT ackrpcTargets
        NAMESPACE ackrpc::
        FILE ackrpcTargets.cmake
        DESTINATION "${ACKRPC_INSTALL_CMAKEDIR}"
        COMPONENT Development)

# CMake modules that belong to the package: every cmake/Ackrpc*.cmake except
# the ones used only to build this tree. The config file includes each, so a
# function such as ackrpc_generate() defined there is available after
# find_package(ackrpc).
file(GLOB _ackrpc_package_modules CONFIGURE_DEPENDS
     "${PROJECT_SOURCE_DIR}/cmake/Ackrpc*.cmake")
list(REMOVE_ITEM _ackrpc_package_modules
     "${PROJECT_SOURCE_DIR}/cmake/AckrpcInternal.cmake"
     "${PROJECT_SOURCE_DIR}/cmake/AckrpcInstall.cmake")
set(ACKRPC_CONFIG_MODULE_INCLUDES "")
foreach(_m IN LISTS _ackrpc_package_modules)
  get_filename_component(_n "${_m}" NAME)
  string(APPEND ACKRPC_CONFIG_MODULE_INCLUDES
         "include(\"\${CMAKE_CURRENT_LIST_DIR}/${_n}\")\n")
endforeach()
if(_ackrpc_package_modules)
  install(FILES ${_ackrpc_package_modules}
          DESTINATION "${ACKRPC_INSTALL_CMAKEDIR}" COMPONENT Development)
endif()

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/ackrpcConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/package/ackrpcConfig.cmake"
  INSTALL_DESTINATION "${ACKRPC_INSTALL_CMAKEDIR}")
# The SONAME carries the major version, so the package promises what the
# SONAME does: any release with the same major version is compatible.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/package/ackrpcConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion)
install(FILES "${PROJECT_BINARY_DIR}/package/ackrpcConfig.cmake"
              "${PROJECT_BINARY_DIR}/package/ackrpcConfigVersion.cmake"
        DESTINATION "${ACKRPC_INSTALL_CMAKEDIR}" COMPONENT Development)

# ackrpc.pc: prefix is found relative to the .pc file itself (${pcfiledir}),
# unless the install directories were given as absolute paths.
function(_ackrpc_pc_dir out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "\${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()
if(IS_ABSOLUTE "${ACKRPC_INSTALL_PKGCONFIGDIR}")
  set(ACKRPC_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _rel "/p/${ACKRPC_INSTALL_PKGCONFIGDIR}" "/p")
  string(REGEX REPLACE "/$" "" _rel "${_rel}")
  set(ACKRPC_PC_PREFIX "\${pcfiledir}/${_rel}")
endif()
_ackrpc_pc_dir(ACKRPC_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
_ackrpc_pc_dir(ACKRPC_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
configure_file("${PROJECT_SOURCE_DIR}/cmake/ackrpc.pc.in"
               "${PROJECT_BINARY_DIR}/package/ackrpc.pc" @ONLY)
configure_file("${PROJECT_SOURCE_DIR}/cmake/ackrpc-outbox.pc.in"
               "${PROJECT_BINARY_DIR}/package/ackrpc-outbox.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/package/ackrpc.pc"
              "${PROJECT_BINARY_DIR}/package/ackrpc-outbox.pc"
        DESTINATION "${ACKRPC_INSTALL_PKGCONFIGDIR}" COMPONENT Development)
