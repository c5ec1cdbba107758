/* stats.c: `ackrpc stats SOCKET`: the server's statistics (calls, statuses,
 * connections), once servers offer a built-in statistics service. They do not yet: the
 * command says so and exits 78 (cli.h), so that scripts can tell it from a server that
 * is down. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

static const char usage[] =
    "usage: ackrpc stats [OPTIONS] SOCKET\n"
    "\n"
    "Asks the server at SOCKET for the server's statistics (calls, statuses, "
    "connections).\n"
    "Servers do not offer a statistics service yet: this prints so and exits 78.\n"
    "\n"
    "Options:\n"
    "  -h, --help   this help\n";

int akrcli_cmd_stats(int argc, char **argv) {
  static const struct option longopts[] = {{"help", 0, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int opt;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (opt == 'h') {
      printf("%s\n%s", usage, akrcli_exit_help);
      return AKRCLI_EXIT_OK;
    }
    fprintf(stderr, "%s", usage);
    return AKRCLI_EXIT_USAGE;
  }
  if (argc - optind != 1) {
    fprintf(stderr, "%s stats: wants SOCKET\n%s", AKRCLI_PROG, usage);
    return AKRCLI_EXIT_USAGE;
  }
  fprintf(stderr,
          "%s stats: %s: the server does not offer a statistics service yet (not "
          "available in this version of ackrpc)\n",
          AKRCLI_PROG, argv[optind]);
  return AKRCLI_EXIT_UNSUPPORTED;
}
