#!/usr/bin/env python3
"""Durable delivery through JetStream (ctest nats_js_single, nats_js_cluster;
docs/SCALE.md, "Durable delivery (JetStream)").

The path under test, with real processes only:

  mailbox_sender (outbox) -> ackrpc-nats import --jetstream STREAM
      -> nats-server (JetStream, file store) -> ackrpc-nats export
      --jetstream STREAM --durable NAME -> mailbox_receiver (reply store)

single   one nats-server -js. N letters stored once, in order; export
         stopped while M more letters are acked into the stream (none reach
         the receiver), restarted: the rest arrive, once, in order; a call
         sent twice with one call id is stored once (the second PubAck says
         duplicate); a letter the receiver refuses for good (ALREADY_EXISTS:
         same sender and seq, another call id) is terminated, not retried
         forever, and the letters behind it still arrive; a message put into
         the stream without a call id (a plain NATS publish) is terminated,
         never delivered; both bridges exit 0 on SIGTERM. The export runs
         with --dead-letter: the two terminated messages are stored, once
         each, in the dead-letter stream it created, with their body, call
         id and Ackrpc-Dead-* headers (read back through the JetStream API);
         an export whose dead-letter subject no stream stores does not
         start, nor one whose STREAM_DEAD stores other subjects; with that
         stream deleted, a refused letter is kept (and the
         letters behind it wait) until the stream is back, then stored there.
cluster  three clustered nats-servers (routes on ports picked beforehand),
         stream replicas 3; the sender and import bridge on "host 1", the
         export bridge and receiver on "host 2"; bridges connect with the
         list of all three URLs. While 10,000 letters go through, a NATS node
         that holds a bridge's connection is SIGKILLed and restarted, and the
         receiver is SIGKILLed twice (restarted each time): every letter
         stored exactly once, in order; the outbox empty.

Everything is bounded in time; every process started is killed and the
temporary directory removed on the way out. Exit 77 (skipped) when
nats-server is not installed.

usage: run_nats_js.py single|cluster --bridge PATH --sender PATH
                      --receiver PATH --cli PATH [--letters N] [--seed S]
"""
import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from mailcheck import check_letters, check_outbox, finish_sender, letters, wait_letters, \
    wait_stored
import procs
from procs import Fail

SENDER = "js-sender"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Run(procs.Run):
    """A procs.Run that starts the pieces of the mailbox-through-JetStream path."""

    def __init__(self, args, budget_s):
        super().__init__("ackrpc-natsjs.", budget_s, keep=args.keep)
        self.args = args

    def receiver(self, sock, db):
        p, log = self.start("receiver", [self.args.receiver, sock, db])
        self.wait_text(p, log, "receiving ")
        return p

    def bridge(self, name, argv, ready="ready"):
        p, log = self.start(name, [self.args.bridge] + argv)
        self.wait_text(p, log, ready, within=45)
        return p, log

    def sender(self, sock, count_sock, outbox, n, wait_ms):
        return self.start("sender", [self.args.sender, "--attempts", "0", "--timeout",
                                     "2000", "--wait", str(wait_ms), "--sender",
                                     SENDER, "--outbox", outbox, "--count-socket",
                                     count_sock, sock, str(n)])


def letter_bytes(sender, seq, body):
    """A mailbox Letter, protobuf-encoded (fields 1 string, 2 uint64, 3 string)."""
    def varint(v):
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return bytes(out)

    def field_str(num, s):
        b = s.encode()
        return bytes([num << 3 | 2]) + varint(len(b)) + b
    return field_str(1, sender) + bytes([2 << 3]) + varint(seq) + field_str(3, body)


def cli_deliver(run, sock, call_id, sender, seq):
    """One Deliver call through `ackrpc call --binary` with that call id."""
    r = subprocess.run([run.args.cli, "call", "--binary", "--call-id", call_id, "-v",
                        sock, "ackrpc.mailbox.Mailbox/Deliver"],
                       input=letter_bytes(sender, seq, f"letter {seq}"),
                       capture_output=True, timeout=30)
    return r.returncode, r.stderr.decode(errors="replace")


def raw_publish(url, subject, payload):
    """A plain NATS publish (no headers, so no call id), straight into the
    stream: what a client other than the import bridge could send."""
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n' +
                  f"PUB {subject} {len(payload)}\r\n".encode() + payload +
                  b"\r\nPING\r\n")
        line = f.readline()
        if not line.startswith(b"PONG"):
            raise Fail(f"nats-server answered {line!r} to a publish")


def nats_request(url, subject, payload, timeout=10):
    """One request over a raw NATS connection: the reply's payload."""
    host, port = url.rsplit("//", 1)[1].split(":")
    inbox = "_INBOX.natsjs_test"
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        f = s.makefile("rb")
        f.readline()  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n' +
                  f"SUB {inbox} 1\r\nPUB {subject} {inbox} {len(payload)}\r\n".encode() +
                  payload + b"\r\n")
        while True:
            line = f.readline()
            if not line:
                raise Fail(f"nats-server closed the connection on a request to {subject}")
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                data = f.read(int(line.split()[-1]))
                f.readline()
                return data
            elif line.startswith(b"-ERR"):
                raise Fail(f"nats-server: {line!r}")


def dead_letters(url, stream):
    """The messages of `stream`, through the JetStream API: a list of
    (headers dict, body bytes)."""
    info = json.loads(nats_request(url, f"$JS.API.STREAM.INFO.{stream}", b""))
    if "error" in info:
        raise Fail(f"stream {stream}: {info['error']}")
    out = []
    state = info["state"]
    for seq in range(state["first_seq"], state["last_seq"] + 1):
        r = json.loads(nats_request(url, f"$JS.API.STREAM.MSG.GET.{stream}",
                                    json.dumps({"seq": seq}).encode()))
        if r.get("error", {}).get("code") == 404:
            continue  # a gap: that message was deleted
        if "error" in r:
            raise Fail(f"stream {stream} message {seq}: {r['error']}")
        m = r["message"]
        headers = {}
        for h in base64.b64decode(m.get("hdrs", "")).decode().split("\r\n")[1:]:
            if ":" in h:
                k, v = h.split(":", 1)
                headers[k.strip()] = v.strip()
        out.append((headers, base64.b64decode(m.get("data", ""))))
    return out


def single(run, n):
    a = run.args
    nats, nlog = run.start("nats", [a.nats_server, "-a", "127.0.0.1", "-p", "-1",
                                    "-js", "-sd", run.path("js"), "--ports_file_dir",
                                    run.tmp])
    ports = run.path(f"nats-server_{nats.pid}.ports")

    def ports_written():
        return os.path.exists(ports) and "nats://" in open(ports).read()

    if not run.wait_for(ports_written, "nats-server"):
        raise Fail("nats-server wrote no ports file")
    url = json.load(open(ports))["nats"][0]
    rsock, rdb = run.path("mailbox.sock"), run.path("mailbox.db")
    isock, odb = run.path("import.sock"), run.path("outbox.db")
    run.receiver(rsock, rdb)
    # A list with a URL where nobody listens: the bridge takes the other.
    imp, _ = run.bridge("import", ["import", "--listen", isock, "--nats",
                                   f"nats://127.0.0.1:{free_port()},{url}",
                                   "--jetstream", "MAIL", "--create-stream", "--verbose"])
    # Dead-letter subjects the export refuses before it connects.
    for subject, why in (("ackrpc.dead", "is under the prefix"),
                         ("dead.*", "must be literal"), ("dead..x", "empty token")):
        r = subprocess.run([a.bridge, "export", "--socket", rsock, "--nats", url,
                            "--jetstream", "MAIL", "--durable", "mailbox",
                            "--dead-letter", subject], capture_output=True, text=True,
                           timeout=10)
        if r.returncode != 64 or why not in r.stderr:
            raise Fail(f"--dead-letter {subject}: exit {r.returncode}, {r.stderr!r}")
    def export_refused(name, extra, says, what):
        p, log = run.start(name, [a.bridge, "export", "--socket", rsock, "--nats", url,
                                  "--jetstream", "MAIL", "--durable", "mailbox"] + extra)
        try:
            rc = p.wait(timeout=max(run.left(), 1))
        except subprocess.TimeoutExpired:
            raise Fail(f"an export {what} did not exit")
        if rc == 0 or says not in open(log).read():
            raise Fail(f"an export {what} exited {rc} without saying why")

    # No stream stores the dead-letter subject: the export does not start.
    export_refused("export-nodead", ["--dead-letter", "dead.mail"],
                   "no stream stores the dead-letter subject dead.mail",
                   "with no stream for its dead letters")
    # A stream named MAIL_DEAD that stores other subjects: not taken for it.
    r = json.loads(nats_request(url, "$JS.API.STREAM.CREATE.MAIL_DEAD", json.dumps(
        {"name": "MAIL_DEAD", "subjects": ["other.x"], "storage": "file"}).encode()))
    if "error" in r:
        raise Fail(f"could not create a stream MAIL_DEAD: {r}")
    export_refused("export-taken", ["--dead-letter", "dead.mail", "--create-stream"],
                   "a stream of that name exists and does not store it",
                   "whose STREAM_DEAD stores other subjects")
    r = json.loads(nats_request(url, "$JS.API.STREAM.DELETE.MAIL_DEAD", b""))
    if not r.get("success"):
        raise Fail(f"could not delete stream MAIL_DEAD: {r}")
    export_argv = ["export", "--socket", rsock, "--nats", url, "--jetstream", "MAIL",
                   "--durable", "mailbox", "--timeout-ms", "3000",
                   "--dead-letter", "dead.mail", "--create-stream"]
    exp, _ = run.bridge("export", export_argv)

    # 1. n letters through the stream.
    p, log = run.sender(isock, rsock, odb, n, 60000)
    finish_sender(run, p, log, n)
    check_letters(rdb, SENDER, 1, n)
    print(f"nats_js: {n} letters stored once, in order "
          f"({run.elapsed():.1f} s)", flush=True)

    # 2. The export stopped: the letters are acked into the stream and wait
    # there; restarted, it delivers them.
    if run.kill(exp, signal.SIGTERM) != 0:
        raise Fail("export did not exit 0 on SIGTERM")
    m = n + n // 2
    p, log = run.sender(isock, rsock, odb, m, 60000)
    run.wait_text(p, log, f"ack seq={m} ", within=max(run.left(), 1))
    time.sleep(0.3)
    seqs, _ = letters(rdb, SENDER)
    if len(seqs) != n:
        raise Fail(f"with the export stopped the receiver got {len(seqs) - n} more "
                   f"letters: the import did not store them in the stream")
    exp, _ = run.bridge("export", export_argv)
    finish_sender(run, p, log, m)
    check_letters(rdb, SENDER, 1, m)
    print(f"nats_js: export stopped while {m - n} letters were acked into the stream; "
          f"restarted, they arrived once, in order", flush=True)

    # 3. One call id twice: stored once, the second PubAck a duplicate.
    cid = "c0ffee" * 4
    for attempt in (1, 2):
        rc, err = cli_deliver(run, isock, cid, "cli", 1)
        if rc != 0:
            raise Fail(f"ackrpc call (attempt {attempt}) exited {rc}: {err}")
    with open(run.log("import")) as f:
        ilog = f.read()
    if f"call_id={cid}: already stored in stream MAIL" not in ilog:
        raise Fail("the second call with one call id was not a duplicate PubAck")

    # 4. A letter refused for good (same sender and seq, another call id):
    # terminated; the next letter still arrives.
    rc, err = cli_deliver(run, isock, "0badc0de", "cli", 1)
    if rc != 0:
        raise Fail(f"ackrpc call (refused letter) exited {rc}: {err}")
    rc, err = cli_deliver(run, isock, "0badc0df", "cli", 2)
    if rc != 0:
        raise Fail(f"ackrpc call (letter 2) exited {rc}: {err}")
    wait_letters(run, rdb, "cli", [1, 2],
                 "stored once; the refused one terminated, not blocking the next")
    elog = open(run.log("export")).read()
    if "call_id=0badc0de: ackrpc.mailbox.Mailbox/Deliver refused: ALREADY_EXISTS" \
            not in elog or "stored on dead.mail as message 1 of stream MAIL_DEAD: " \
            "terminated" not in elog:
        raise Fail("the export did not log the refused letter as terminated")
    # 5. A message in the stream without a call id (not from an import
    # bridge): terminated, never delivered; the next letter arrives.
    raw_publish(url, "ackrpc.ackrpc.mailbox.Mailbox.Deliver",
                letter_bytes("cli", 99, "no call id"))
    rc, err = cli_deliver(run, isock, "0badc0e0", "cli", 3)
    if rc != 0:
        raise Fail(f"ackrpc call (letter 3) exited {rc}: {err}")
    wait_letters(run, rdb, "cli", [1, 2, 3],
                 "the message without a call id terminated, not delivered")
    elog = open(run.log("export")).read()
    if "no Ackrpc-Call-Id of 1 to 64 bytes in lowercase hex: a dead letter" \
            not in elog or "as message 2 of stream MAIL_DEAD: terminated" not in elog:
        raise Fail("the export did not log the message without a call id as "
                   "terminated")
    # Both are in the dead-letter stream, once each, as they were sent.
    dead = dead_letters(url, "MAIL_DEAD")
    if len(dead) != 2:
        raise Fail(f"the dead-letter stream holds {len(dead)} messages, not 2")
    (h1, b1), (h2, b2) = dead
    want1 = {"Ackrpc-Call-Id": "0badc0de", "Ackrpc-Dead-Status": "6",
             "Ackrpc-Dead-Subject": "ackrpc.ackrpc.mailbox.Mailbox.Deliver",
             "Ackrpc-Dead-Stream": "MAIL"}
    for k, v in want1.items():
        if h1.get(k) != v:
            raise Fail(f"dead letter 1: {k} is {h1.get(k)!r}, not {v!r} ({h1})")
    if not h1.get("Ackrpc-Dead-Reason", "").startswith("ALREADY_EXISTS: ") or \
            b1 != letter_bytes("cli", 1, "letter 1"):
        raise Fail(f"dead letter 1: reason or body wrong: {h1}, {b1!r}")
    if "Ackrpc-Call-Id" in h2 or "Ackrpc-Dead-Status" in h2 or \
            not h2.get("Ackrpc-Dead-Reason", "").startswith("no Ackrpc-Call-Id") or \
            b2 != letter_bytes("cli", 99, "no call id"):
        raise Fail(f"dead letter 2 wrong: {h2}, {b2!r}")
    for h in (h1, h2):
        # Its own Nats-Msg-Id (so that a redelivery is stored once), none of
        # the original's JetStream headers.
        nats_h = {k: v for k, v in h.items() if k.startswith("Nats-")}
        if nats_h != {"Nats-Msg-Id": f"MAIL-{h.get('Ackrpc-Dead-Seq')}"}:
            raise Fail(f"a dead letter's Nats-* headers are {nats_h}")
    if int(h1["Ackrpc-Dead-Seq"]) >= int(h2["Ackrpc-Dead-Seq"]):
        raise Fail(f"dead letters' stream sequences out of order: {h1}, {h2}")
    check_outbox(odb)
    print("nats_js: a repeated call id stored once; a refused letter terminated, "
          "the next delivered; a message without a call id terminated; both in the "
          "dead-letter stream", flush=True)

    # 6. The dead-letter stream gone: a refused letter is kept (Nak'ed), not
    # terminated, and the letter behind it waits; with the stream back, the
    # refused one is stored there and terminated, and the next arrives.
    r = json.loads(nats_request(url, "$JS.API.STREAM.DELETE.MAIL_DEAD", b""))
    if not r.get("success"):
        raise Fail(f"could not delete the dead-letter stream: {r}")
    rc, err = cli_deliver(run, isock, "0badc0e1", "cli", 2)  # seq 2 again: refused
    if rc != 0:
        raise Fail(f"ackrpc call (refused letter, no dead-letter stream) exited {rc}: {err}")
    rc, err = cli_deliver(run, isock, "0badc0e2", "cli", 4)
    if rc != 0:
        raise Fail(f"ackrpc call (letter 4) exited {rc}: {err}")
    elog_path = run.log("export")

    def kept_twice():
        with open(elog_path, errors="replace") as f:
            return f.read().count("cannot store it on dead.mail") >= 2

    # Redelivered after its 5 s Nak and still not stored: it was kept.
    if not run.wait_for(kept_twice, "the kept dead letter tried twice", within=20):
        raise Fail("the dead letter that could not be stored was not tried again")
    seqs, _ = letters(rdb, "cli")
    if 4 in seqs:
        raise Fail("the letter behind a dead letter that could not be stored was "
                   "delivered: the dead letter was dropped")
    r = json.loads(nats_request(url, "$JS.API.STREAM.CREATE.MAIL_DEAD", json.dumps(
        {"name": "MAIL_DEAD", "subjects": ["dead.mail"], "storage": "file"}).encode()))
    if "error" in r:
        raise Fail(f"could not create the dead-letter stream again: {r}")
    wait_letters(run, rdb, "cli", [1, 2, 3, 4],
                 "delivered once the dead letter before it was stored")
    dead = dead_letters(url, "MAIL_DEAD")
    if len(dead) != 1 or dead[0][0].get("Ackrpc-Call-Id") != "0badc0e1":
        raise Fail(f"the kept dead letter is not the one in the new stream: {dead}")
    print("nats_js: with no dead-letter stream a refused letter was kept, not "
          "dropped; stored there once the stream was back", flush=True)
    for name, p in (("import", imp), ("export", exp)):
        if run.kill(p, signal.SIGTERM) != 0:
            raise Fail(f"{name} did not exit 0 on SIGTERM")


def cluster(run, n, rnd):
    a = run.args
    nodes = []
    client = [free_port() for _ in range(3)]
    route = [free_port() for _ in range(3)]
    monitor = [free_port() for _ in range(3)]
    for i in range(3):
        routes = ", ".join(f"nats-route://127.0.0.1:{route[j]}" for j in range(3)
                           if j != i)
        conf = run.path(f"n{i + 1}.conf")
        with open(conf, "w") as f:
            f.write(f"""server_name: n{i + 1}
listen: 127.0.0.1:{client[i]}
http: 127.0.0.1:{monitor[i]}
jetstream {{ store_dir: "{run.path(f'js{i + 1}')}" }}
cluster {{
  name: ackrpc
  listen: 127.0.0.1:{route[i]}
  routes: [{routes}]
}}
""")
        nodes.append(conf)
    urls = [f"nats://127.0.0.1:{p}" for p in client]
    servers = [None, None, None]

    def start_node(i):
        p, log = run.start(f"n{i + 1}-", [a.nats_server, "-c", nodes[i]])
        run.wait_text(p, log, "Server is ready")
        servers[i] = p

    for i in range(3):
        start_node(i)
    rsock, rdb = run.path("mailbox.sock"), run.path("mailbox.db")
    isock, odb = run.path("import.sock"), run.path("outbox.db")
    # host 1 lists node 1 first, host 2 node 2 (nats.c shuffles the list).
    host1 = ",".join([urls[0], urls[1], urls[2]])
    host2 = ",".join([urls[1], urls[2], urls[0]])
    receiver = run.receiver(rsock, rdb)
    run.bridge("import", ["import", "--listen", isock, "--nats", host1, "--jetstream",
                          "MAIL", "--create-stream", "--replicas", "3"])
    run.bridge("export", ["export", "--socket", rsock, "--nats", host2, "--jetstream",
                          "MAIL", "--durable", "mailbox", "--timeout-ms", "3000"])
    print(f"nats_js: cluster up, bridges ready ({run.elapsed():.1f} s)", flush=True)
    sender, slog = run.sender(isock, rsock, odb, n,
                              max(int(run.left() * 1000) - 10000, 1000))

    def bridged_node():
        """A node holding a bridge's connection (from its /connz)."""
        held = []
        for i in range(3):
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{monitor[i]}/connz", timeout=5) as r:
                    conns = json.load(r).get("connections") or []
                if any(c.get("name") == "ackrpc-nats" for c in conns):
                    held.append(i)
            except OSError:
                pass
        return rnd.choice(held) if held else rnd.randrange(3)

    plan = [(int(n * 0.2), "receiver"), (int(n * 0.4), "nats"),
            (int(n * 0.7), "receiver")]
    kills = []
    for at, who in plan:
        wait_stored(run, rdb, SENDER, at, sender, f"kill the {who}")
        time.sleep(rnd.uniform(0, 0.05))
        if who == "receiver":
            run.kill(receiver)
            time.sleep(rnd.uniform(0, 0.3))
            receiver = run.receiver(rsock, rdb)
            kills.append("receiver")
        else:
            i = bridged_node()
            run.kill(servers[i])
            time.sleep(rnd.uniform(0.5, 1.5))
            start_node(i)
            kills.append(f"nats node n{i + 1}")
        stored = len(letters(rdb, SENDER)[0])
        print(f"nats_js: SIGKILL {kills[-1]} at {stored} letters stored "
              f"({run.elapsed():.1f} s)", flush=True)
    finish_sender(run, sender, slog, n)
    if run.kill(receiver, signal.SIGTERM) != 0:
        raise Fail("the receiver did not exit 0 on SIGTERM")
    check_letters(rdb, SENDER, 1, n)
    check_outbox(odb)
    print(f"nats_js: cluster: {n} letters stored once, in order; outbox empty; "
          f"killed {', '.join(kills)}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["single", "cluster"])
    ap.add_argument("--bridge", required=True)
    ap.add_argument("--sender", required=True)
    ap.add_argument("--receiver", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--letters", type=int, default=None)
    ap.add_argument("--budget", type=int, default=None, help="seconds overall")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    args.nats_server = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server")
         if os.access(p, os.X_OK)), None)
    if not args.nats_server:
        print("nats_js: nats-server is not installed: skipped")
        return 77
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % 100000
    rnd = random.Random(seed)
    single_mode = args.mode == "single"
    n = args.letters or (300 if single_mode else 10000)
    budget = args.budget or (100 if single_mode else 160)
    run = Run(args, budget)
    print(f"nats_js {args.mode}: {n} letters, seed {seed}, in {run.tmp}", flush=True)
    failed = True
    try:
        if single_mode:
            single(run, n)
        else:
            cluster(run, n, rnd)
        failed = False
        print(f"nats_js {args.mode}: ok ({run.elapsed():.1f} s)", flush=True)
        return 0
    except (Fail, subprocess.TimeoutExpired, OSError) as e:
        print(f"nats_js {args.mode}: FAIL (seed {seed}): {e}", file=sys.stderr)
        return 1
    finally:
        run.cleanup(failed)


if __name__ == "__main__":
    sys.exit(main())
