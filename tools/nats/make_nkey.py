#!/usr/bin/env python3
"""make_nkey.py: NATS nkey users and JWT logins for tests (test_nats_identity).

usage: make_nkey.py SEED_FILE
       make_nkey.py --creds DIR

The first form makes an Ed25519 key with the openssl command, writes its
seed in NATS's nkey encoding ("SU...") to SEED_FILE (mode 0600) and prints
the user's public key ("U..."). The encoding: a prefix byte (or two, for a
seed), the 32 raw bytes, a CRC-16/XMODEM of those, little-endian, all in
base32 without padding.

The second makes what decentralized (JWT) authentication needs, as
test_nats_identity's user/password test has it with accounts in the
server's configuration: an operator; account SVC, which exports the
service subjects ackrpc.>, and account CLI, which imports them (share:
true, so nats-server adds Nats-Request-Info), both signed by the operator;
user "bridge" of SVC and "alice" of CLI, and "stranger" of an account the
server does not know. Each user's JWT (signed by its account) and seed go
to DIR/NAME.creds (mode 0600), the format nats.c's
natsOptions_SetUserCredentialsFromFiles() reads, and its public key to
DIR/NAME.pub; CLI's public key to DIR/CLI.pub. Prints the nats-server
configuration that trusts the operator and preloads SVC and CLI (resolver
MEMORY). A JWT is base64url(header).base64url(claims).base64url(the
Ed25519 signature of the first two parts by the issuer's key), header
{"typ":"JWT","alg":"ed25519-nkey"}.
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

PREFIX_SEED = 18 << 3  # 'S'
PREFIX_USER = 20 << 3  # 'U'
PREFIX_ACCOUNT = 0  # 'A'
PREFIX_OPERATOR = 14 << 3  # 'O'


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode(prefix, raw):
    body = bytes(prefix) + raw
    return base64.b32encode(body + crc16(body).to_bytes(2, "little")).decode().rstrip("=")


class Key:
    """An Ed25519 key made by openssl, kept as a DER file in `tmp` for
    signing; `prefix` says what it is (user, account, operator)."""

    def __init__(self, tmp, name, prefix):
        self.path = os.path.join(tmp, name + ".der")
        self.prefix = prefix
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-outform", "DER",
                        "-out", self.path], check=True)
        pub = subprocess.run(["openssl", "pkey", "-inform", "DER", "-in", self.path,
                              "-pubout", "-outform", "DER"], check=True,
                             capture_output=True).stdout
        with open(self.path, "rb") as f:
            private = f.read()
        # PKCS#8 and SubjectPublicKeyInfo of Ed25519 end with the 32 raw bytes.
        self.raw_seed, self.raw_public = private[-32:], pub[-32:]

    def public(self):
        return encode([self.prefix], self.raw_public)

    def seed(self):
        return encode([PREFIX_SEED | (self.prefix >> 5), (self.prefix & 31) << 3],
                      self.raw_seed)

    def sign(self, data):
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(self.path)) as f:
            f.write(data)
            f.flush()
            return subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", self.path,
                                   "-keyform", "DER", "-rawin", "-in", f.name],
                                  check=True, capture_output=True).stdout


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(issuer, subject, name, nats):
    """A JWT for `subject` (a Key) signed by `issuer` (a Key)."""
    claims = {"iat": int(time.time()), "iss": issuer.public(), "name": name,
              "sub": subject.public(), "nats": nats}
    body = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    claims["jti"] = base64.b32encode(hashlib.sha256(body).digest()).decode().rstrip("=")
    head = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    signed = head + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())
    return signed + "." + b64url(issuer.sign(signed.encode()))


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}


def account_jwt(operator, account, name, exports=(), imports=()):
    limits = dict(UNLIMITED, imports=-1, exports=-1, wildcards=True, conn=-1, leaf=-1)
    nats = {"type": "account", "version": 2, "limits": limits}
    if exports:
        nats["exports"] = list(exports)
    if imports:
        nats["imports"] = list(imports)
    return jwt(operator, account, name, nats)


def write_creds(path, user_jwt, user):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n"
                "------END NATS USER JWT------\n\n"
                f"-----BEGIN USER NKEY SEED-----\n{user.seed()}\n"
                "------END USER NKEY SEED------\n")


def make_creds(out):
    with tempfile.TemporaryDirectory() as tmp:
        operator = Key(tmp, "operator", PREFIX_OPERATOR)
        svc = Key(tmp, "svc", PREFIX_ACCOUNT)
        cli = Key(tmp, "cli", PREFIX_ACCOUNT)
        other = Key(tmp, "other", PREFIX_ACCOUNT)
        with open(os.path.join(out, "operator.jwt"), "w") as f:
            f.write(jwt(operator, operator, "test-operator",
                        {"type": "operator", "version": 2}))
        user_nats = dict(UNLIMITED, type="user", version=2)
        user_nats.update({"pub": {}, "sub": {}})
        for name, account in (("bridge", svc), ("alice", cli), ("stranger", other)):
            user = Key(tmp, name, PREFIX_USER)
            write_creds(os.path.join(out, name + ".creds"),
                        jwt(account, user, name, user_nats), user)
            with open(os.path.join(out, name + ".pub"), "w") as f:
                f.write(user.public() + "\n")
        with open(os.path.join(out, "CLI.pub"), "w") as f:
            f.write(cli.public() + "\n")
        svc_jwt = account_jwt(operator, svc, "SVC", exports=[
            {"name": "ackrpc", "subject": "ackrpc.>", "type": "service"}])
        cli_jwt = account_jwt(operator, cli, "CLI", imports=[
            {"name": "ackrpc", "subject": "ackrpc.>", "account": svc.public(),
             "type": "service", "share": True}])
        print(f'operator: "{os.path.join(out, "operator.jwt")}"\n'
              "resolver: MEMORY\n"
              f'resolver_preload: {{\n  {svc.public()}: "{svc_jwt}"\n'
              f'  {cli.public()}: "{cli_jwt}"\n}}')


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--creds":
        make_creds(sys.argv[2])
        return
    if len(sys.argv) != 2:
        sys.exit("usage: make_nkey.py SEED_FILE | --creds DIR")
    with tempfile.TemporaryDirectory() as d:
        user = Key(d, "user", PREFIX_USER)
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(user.seed())
        f.write("\n")
    print(user.public())


if __name__ == "__main__":
    main()
