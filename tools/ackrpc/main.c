/* main.c: the ackrpc command-line tool: dispatches to one subcommand per
 * file (call.c, list.c, describe.c, health.c, stats.c). Documentation:
 * docs/CLI.md and ackrpc(1). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: ackrpc COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Commands:\n"
    "  call SOCKET METHOD [JSON]   call a method: JSON in, JSON out\n"
    "  list [SOCKET]               list the services and their methods\n"
    "  describe [SOCKET] [NAME]   show a service, method, message or enum as .proto\n"
    "  health SOCKET               whether the server is serving\n"
    "  stats SOCKET                the server's per-method statistics\n"
    "  capture SOCKET              watch the server's calls (pcapng, JSON)\n"
    "  replay FILE SOCKET          send captured calls again, compare replies\n"
    "\n"
    "`ackrpc COMMAND --help` tells more; `ackrpc --version` prints the version.\n"
    "SOCKET is a socket path or @name (Linux abstract namespace), unix: allowed\n"
    "in front. call, list and\n"
    "describe ask the server for the services' descriptors (reflection), unless\n"
    "given with --descriptor-set FILE or --proto FILE.\n"
    "Documentation: ackrpc(1), docs/CLI.md.\n";

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
} commands[] = {
    {"call", akrcli_cmd_call},         {"list", akrcli_cmd_list},
    {"describe", akrcli_cmd_describe}, {"health", akrcli_cmd_health},
    {"stats", akrcli_cmd_stats},       {"capture", akrcli_cmd_capture},
    {"replay", akrcli_cmd_replay},
};

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "%s", usage);
    return AKRCLI_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
      strcmp(cmd, "help") == 0) {
    if (argc >= 3 && strcmp(cmd, "help") == 0) {
      char *help_argv[] = {argv[2], "--help", NULL};
      for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, argv[2]) == 0)
          return commands[i].run(2, help_argv);
      fprintf(stderr, "%s: unknown command \"%s\"\n%s", AKRCLI_PROG, argv[2], usage);
      return AKRCLI_EXIT_USAGE;
    }
    printf("%s\n%s", usage, akrcli_exit_help);
    return AKRCLI_EXIT_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    printf("ackrpc %s (protocol %d)\n", ACKRPC_VERSION_STRING, ACKRPC_PROTOCOL_VERSION);
    return AKRCLI_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(commands[i].name, cmd) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "%s: unknown command \"%s\"\n%s", AKRCLI_PROG, cmd, usage);
  return AKRCLI_EXIT_USAGE;
}
