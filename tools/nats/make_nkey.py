#!/usr/bin/env python3
"""make_nkey.py: a NATS nkey user for tests (test_nats_identity).

usage: make_nkey.py SEED_FILE

Makes an Ed25519 key with the openssl command, writes its seed in NATS's
nkey encoding ("SU...") to SEED_FILE (mode 0600) and prints the user's
public key ("U..."). The encoding: a prefix byte (or two, for a seed), the
32 raw bytes, a CRC-16/XMODEM of those, little-endian, all in base32
without padding.
"""
import base64
import os
import subprocess
import sys
import tempfile

PREFIX_SEED = 18 << 3  # 'S'
PREFIX_USER = 20 << 3  # 'U'


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


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_nkey.py SEED_FILE")
    with tempfile.TemporaryDirectory() as d:
        key = os.path.join(d, "key.der")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-outform", "DER",
                        "-out", key], check=True)
        pub = subprocess.run(["openssl", "pkey", "-inform", "DER", "-in", key, "-pubout",
                              "-outform", "DER"], check=True, capture_output=True).stdout
        with open(key, "rb") as f:
            private = f.read()
    # PKCS#8 and SubjectPublicKeyInfo of Ed25519 end with the 32 raw bytes.
    seed, public = private[-32:], pub[-32:]
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encode([PREFIX_SEED | (PREFIX_USER >> 5), (PREFIX_USER & 31) << 3], seed))
        f.write("\n")
    print(encode([PREFIX_USER], public))


if __name__ == "__main__":
    main()
