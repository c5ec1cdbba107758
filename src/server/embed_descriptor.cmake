# embed_descriptor.cmake: turns a FileDescriptorSet holding one file (protoc
# --descriptor_set_out, no imports) into C: the FileDescriptorProto's bytes
# and an ackrpc_file_descriptor naming them, for the built-in reflection
# service (builtin.c). Run as
#   cmake -DIN=set.pb -DOUT=file.c -DPROTO=ackrpc/reflection.proto -DVAR=name -P this
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
# The set is field 1 (tag 0x0a), a varint length, then the file: skip both.
string(SUBSTRING "${hex}" 0 2 tag)
if(NOT tag STREQUAL "0a")
  message(FATAL_ERROR "${IN}: not a FileDescriptorSet with one file")
endif()
set(pos 2)
foreach(i RANGE 4) # a varint of up to 5 bytes
  string(SUBSTRING "${hex}" ${pos} 2 b)
  math(EXPR v "0x${b}")
  math(EXPR pos "${pos} + 2")
  if(v LESS 128)
    break()
  endif()
endforeach()
math(EXPR len "${n} - ${pos}")
string(SUBSTRING "${hex}" ${pos} ${len} body)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${body}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n  " body "${body}")
file(WRITE "${OUT}.tmp"
  "/* Generated from ${PROTO} by src/embed_descriptor.cmake. DO NOT EDIT. */\n"
  "#include <ackrpc/common.h>\n\n"
  "static const uint8_t data[] = {\n  ${body}\n};\n\n"
  "extern const ackrpc_file_descriptor ${VAR};\n"
  "const ackrpc_file_descriptor ${VAR} = {\"${PROTO}\", data, sizeof data};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
