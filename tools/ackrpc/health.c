/* health.c: `ackrpc health SOCKET`: asks the server's built-in health
 * service (ackrpc.reflection.Health/Check) whether it is serving. Prints
 * SERVING (exit 0) or NOT_SERVING (exit 14, UNAVAILABLE: the server is
 * stopping or has handed its socket to a successor). */
#include <getopt.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

#include "ackrpc/reflection.pb-c.h"
#include "cli.h"

static const char usage[] =
    "usage: ackrpc health [OPTIONS] SOCKET\n"
    "\n"
    "Asks the server at SOCKET whether it is serving, and prints SERVING (exit\n"
    "status 0) or NOT_SERVING (exit status 14: the server is stopping, or has\n"
    "handed its socket to a successor, and finishes its calls in flight). A\n"
    "server that cannot be reached gives 69; one whose built-in services are\n"
    "turned off gives 78.\n"
    "\n"
    "Options:\n"
    "  -q, --quiet  print nothing: the exit status says it\n"
    "  -h, --help   this help\n";

int akrcli_cmd_health(int argc, char **argv) {
  static const struct option longopts[] = {{"quiet", 0, NULL, 'q'},
                                           {"help", 0, NULL, 'h'},
                                           AKRCLI_SERVER_LONGOPT,
                                           {NULL, 0, NULL, 0}};
  akrcli_server srv = {0};
  int opt, quiet = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "t:qh", longopts, NULL)) != -1) {
    if (opt == 'q') {
      quiet = 1;
      continue;
    }
    int taken = akrcli_server_opt_take(&srv, "health", opt, optarg);
    if (taken < 0) return AKRCLI_EXIT_USAGE;
    if (taken) continue;
    if (opt == 'h') {
      printf("%s\n%s\n%s", usage, akrcli_server_help, akrcli_exit_help);
      return AKRCLI_EXIT_OK;
    }
    fprintf(stderr, "%s", usage);
    return AKRCLI_EXIT_USAGE;
  }
  if (argc - optind != 1) {
    fprintf(stderr, "%s health: wants SOCKET\n%s", AKRCLI_PROG, usage);
    return AKRCLI_EXIT_USAGE;
  }
  ProtobufCMessage *msg = NULL;
  srv.socket = argv[optind];
  int rc = akrcli_builtin_call("health", &srv, &akrcli_m_health, NULL, &msg, NULL);
  if (rc != 0) return rc;
  const Ackrpc__Reflection__HealthReply *r =
      (const Ackrpc__Reflection__HealthReply *)msg;
  const char *name = "UNKNOWN";
  rc = ACKRPC_UNAVAILABLE;
  if (r->status == ACKRPC__REFLECTION__HEALTH_REPLY__SERVING_STATUS__SERVING) {
    name = "SERVING";
    rc = AKRCLI_EXIT_OK;
  } else if (r->status ==
             ACKRPC__REFLECTION__HEALTH_REPLY__SERVING_STATUS__NOT_SERVING) {
    name = "NOT_SERVING";
  }
  protobuf_c_message_free_unpacked(msg, NULL);
  if (!quiet) printf("%s\n", name);
  if (fflush(stdout) != 0) return AKRCLI_EXIT_SOFTWARE;
  return rc;
}
