// grpc_tcp peer, server: the "ack" workload of /work/shared/peers (see its
// README and grpc/), served by a gRPC C++ sync server over TCP on
// 127.0.0.1, a port the server picks.
//   grpc_tcp_server SOCKET SIZE
// The peers' harness waits for SOCKET to be a socket file, so once the TCP
// port listens the server writes it to SOCKET.port (via a rename: the
// client never reads half a file) and then binds a Unix socket at SOCKET,
// which only says "ready". Stopped by SIGTERM (the default action).
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ack.grpc.pb.h"

namespace {

class AckImpl final : public peers::AckService::Service {
 public:
  explicit AckImpl(size_t expected) : expected_(expected) {}
  grpc::Status Call(grpc::ServerContext*, const peers::AckRequest* req,
                    peers::Ack* ack) override {
    ack->set_id(req->id());
    ack->set_status(req->body().size() == expected_ ? 0 : 1);
    return grpc::Status::OK;
  }

 private:
  size_t expected_;
};

bool write_port(const std::string& path, int port) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return false;
  std::fprintf(f, "%d\n", port);
  if (std::fclose(f) != 0) return false;
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

bool ready_marker(const char* path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (fd < 0 || std::strlen(path) >= sizeof a.sun_path) return false;
  std::strcpy(a.sun_path, path);
  return bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd, 1) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOCKET SIZE\n", argv[0]);
    return 2;
  }
  AckImpl impl(std::strtoul(argv[2], nullptr, 10));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&impl);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port <= 0) {
    std::fprintf(stderr, "grpc_tcp_server: failed to start\n");
    return 1;
  }
  if (!write_port(std::string(argv[1]) + ".port", port) || !ready_marker(argv[1])) {
    std::perror("grpc_tcp_server: port file or ready socket");
    return 1;
  }
  server->Wait();
  return 0;
}
