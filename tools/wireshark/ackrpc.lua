-- ackrpc.lua: a Wireshark/tshark dissector for ackrpc captures (the pcapng
-- files `ackrpc capture -w` writes: link type LINKTYPE_USER0, 147; one
-- packet per request and per reply). The record format is in
-- docs/CAPTURE.md.
--
--   tshark -X lua_script:tools/wireshark/ackrpc.lua -r calls.pcapng \
--          -T fields -e ackrpc.method -e ackrpc.status
--   wireshark -X lua_script:tools/wireshark/ackrpc.lua calls.pcapng
--
-- Or copy it into ~/.local/lib/wireshark/plugins/ to load it always.
-- Filter fields: ackrpc.kind, ackrpc.method, ackrpc.call_id, ackrpc.uid,
-- ackrpc.gid, ackrpc.pid, ackrpc.status, ackrpc.message, ackrpc.body,
-- ackrpc.flags, ackrpc.lost.

local ackrpc = Proto("ackrpc", "ackrpc call capture")

local kinds = { [1] = "request", [2] = "reply" }
local statuses = {
  [0] = "OK", [1] = "CANCELLED", [2] = "UNKNOWN", [3] = "INVALID_ARGUMENT",
  [4] = "DEADLINE_EXCEEDED", [5] = "NOT_FOUND", [6] = "ALREADY_EXISTS",
  [7] = "PERMISSION_DENIED", [8] = "RESOURCE_EXHAUSTED", [9] = "FAILED_PRECONDITION",
  [10] = "ABORTED", [11] = "OUT_OF_RANGE", [12] = "UNIMPLEMENTED", [13] = "INTERNAL",
  [14] = "UNAVAILABLE", [15] = "DATA_LOSS", [16] = "UNAUTHENTICATED",
}

local f = ackrpc.fields
f.version = ProtoField.uint8("ackrpc.version", "Record version")
f.kind = ProtoField.uint8("ackrpc.kind", "Kind", base.DEC, kinds)
f.flags = ProtoField.uint16("ackrpc.flags", "Flags", base.HEX)
f.redacted = ProtoField.bool("ackrpc.flags.redacted", "Body redacted", 16, nil, 0x0001)
f.omitted = ProtoField.bool("ackrpc.flags.omitted", "Body left out", 16, nil, 0x0002)
f.truncated = ProtoField.bool("ackrpc.flags.truncated", "Body truncated", 16, nil, 0x0004)
f.uid = ProtoField.uint32("ackrpc.uid", "Peer uid")
f.gid = ProtoField.uint32("ackrpc.gid", "Peer gid")
f.pid = ProtoField.uint32("ackrpc.pid", "Peer pid")
f.status = ProtoField.uint32("ackrpc.status", "Status", base.DEC, statuses)
f.lost = ProtoField.uint32("ackrpc.lost", "Records lost before this one")
f.method = ProtoField.string("ackrpc.method", "Method")
f.call_id = ProtoField.bytes("ackrpc.call_id", "Call id")
f.message = ProtoField.string("ackrpc.message", "Message")
f.body = ProtoField.bytes("ackrpc.body", "Body")

local HEAD = 32

function ackrpc.dissector(tvb, pinfo, tree)
  local len = tvb:len()
  if len < HEAD or tvb(0, 1):uint() ~= 1 then return 0 end
  local kind = tvb(1, 1):uint()
  local mlen, clen, tlen = tvb(24, 2):uint(), tvb(26, 1):uint(), tvb(28, 2):uint()
  if HEAD + mlen + clen + tlen > len then return 0 end
  pinfo.cols.protocol = "ackrpc"
  local t = tree:add(ackrpc, tvb(), "ackrpc " .. (kinds[kind] or "record"))
  t:add(f.version, tvb(0, 1))
  t:add(f.kind, tvb(1, 1))
  local ft = t:add(f.flags, tvb(2, 2))
  ft:add(f.redacted, tvb(2, 2))
  ft:add(f.omitted, tvb(2, 2))
  ft:add(f.truncated, tvb(2, 2))
  t:add(f.uid, tvb(4, 4))
  t:add(f.gid, tvb(8, 4))
  t:add(f.pid, tvb(12, 4))
  if kind == 2 then t:add(f.status, tvb(16, 4)) end
  t:add(f.lost, tvb(20, 4))
  local at = HEAD
  local method = tvb(at, mlen):string()
  t:add(f.method, tvb(at, mlen))
  at = at + mlen
  if clen > 0 then t:add(f.call_id, tvb(at, clen)) end
  at = at + clen
  if tlen > 0 then t:add(f.message, tvb(at, tlen)) end
  at = at + tlen
  if at < len then t:add(f.body, tvb(at, len - at)) end
  local info = (kinds[kind] or "?") .. " " .. method
  if kind == 2 then
    info = info .. " " .. (statuses[tvb(16, 4):uint()] or tostring(tvb(16, 4):uint()))
  end
  pinfo.cols.info = info .. " pid=" .. tvb(12, 4):uint()
  return len
end

-- LINKTYPE_USER0 is WTAP_ENCAP_USER0 inside Wireshark.
local encaps = wtap_encaps or wtap
DissectorTable.get("wtap_encap"):add(encaps.USER0, ackrpc)
