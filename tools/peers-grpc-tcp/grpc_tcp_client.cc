// grpc_tcp peer, client: blocking unary calls over TCP on loopback, one
// channel shared by all threads (as the grpc_uds peer's default), driven by
// the peers' common load harness (/work/shared/peers/common/bench.c).
//   grpc_tcp_client -p NAME -a SOCKET -s SIZE -c CONC -d SEC -w SEC
// The server's port is read from SOCKET.port (see grpc_tcp_server.cc).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "ack.grpc.pb.h"
#include "bench.h"

namespace {

std::shared_ptr<grpc::Channel> g_channel;

int global_init(const bench_cfg* cfg) {
  std::string path = std::string(cfg->addr) + ".port";
  FILE* f = std::fopen(path.c_str(), "r");
  int port = 0;
  if (!f) return -1;
  bool ok = std::fscanf(f, "%d", &port) == 1 && port > 0;
  std::fclose(f);
  if (!ok) return -1;
  g_channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                  grpc::InsecureChannelCredentials());
  return g_channel->WaitForConnected(std::chrono::system_clock::now() +
                                     std::chrono::seconds(5))
             ? 0
             : -1;
}

void* thread_init(const bench_cfg*, int) {
  return peers::AckService::NewStub(g_channel).release();
}

int call(void* p, uint64_t id, const uint8_t* body, size_t len) {
  auto* stub = static_cast<peers::AckService::Stub*>(p);
  peers::AckRequest req;
  req.set_id(id);
  req.set_body(body, len);
  peers::Ack ack;
  grpc::ClientContext ctx;
  grpc::Status s = stub->Call(&ctx, req, &ack);
  return s.ok() && ack.id() == id && ack.status() == 0 ? 0 : -1;
}

void thread_fini(void* p) {
  delete static_cast<peers::AckService::Stub*>(p);
}

}  // namespace

int main(int argc, char** argv) {
  static const bench_ops ops = {global_init, thread_init, call, thread_fini};
  return bench_main(argc, argv, &ops);
}
