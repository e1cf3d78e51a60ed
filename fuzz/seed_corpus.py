#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the webhook fixtures.

    python3 fuzz/seed_corpus.py

Deterministic (standard library only): one file per fixture and target, in the input format
each target documents at its top, under fuzz/corpus/<target>/. Re-running rewrites the same
files. The `event_decode` seeds are records encoded the way `Event::encode` does
(schema/log-format.md): format byte 1, then bincode 2 `standard()` (varint integers).
"""

import json
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"

SOURCES = ["openphone", "twilio", "salesmsg", "backfill-openphone", "backfill-twilio",
           "outbound", "internal"]


def varint(n):
    """bincode 2 unsigned varint."""
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfb" + struct.pack("<H", n)
    if n < 1 << 32:
        return b"\xfc" + struct.pack("<I", n)
    return b"\xfd" + struct.pack("<Q", n)


def zigzag(n):
    return varint((n << 1) ^ (n >> 63))


def string(b):
    return varint(len(b)) + b


def record(seq, micros, source, route, headers, body, verification):
    out = bytearray([1])
    out += varint(seq) + zigzag(micros) + varint(SOURCES.index(source))
    out += string(route.encode())
    out += varint(len(headers))
    for name, value in headers:
        out += string(name.encode()) + string(value.encode())
    out += string(body)
    out += verification
    return bytes(out)


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    fixtures = sorted((ROOT / "fixtures").glob("*/*.json"))
    for n, path in enumerate(fixtures):
        fx = json.loads(path.read_text())
        name = path.stem
        h = fx["headers"]
        body = fx["body"].encode()
        path_q = fx["path"]
        query = path_q.split("?", 1)[1] if "?" in path_q else ""
        provider = fx["provider"]
        if provider == "openphone":
            if "openphone-signature" in h:
                write("sig_quo_legacy", name, h["openphone-signature"].encode() + b"\n" + body)
            if "webhook-signature" in h:
                seed = "\n".join([h.get("webhook-id", ""), h.get("webhook-timestamp", ""),
                                  h["webhook-signature"]]).encode() + b"\n" + body
                write("sig_standard_webhooks", name, seed)
            write("parse_quo_json", name, body)
            source, verification = "openphone", b"\x00\x00"  # QuoLegacy { key: 0 }
        elif provider == "twilio":
            seed = "\n".join([path_q, h.get("content-type", ""), h.get("x-twilio-signature", ""),
                              "hooks.example.com"]).encode() + b"\n" + body
            write("sig_twilio", name, seed)
            write("parse_twilio_form", name, body)
            source, verification = "twilio", b"\x02\x00\x00"  # Twilio { token: 0, url: 0 }
        else:
            write("sig_salesmsg", name, query.encode())
            write("parse_quo_json", name, body)
            source, verification = "salesmsg", b"\x03\x00"  # SalesMsgSecret { secret: 0 }
        headers = sorted((k, v) for k, v in h.items() if k != "user-agent")
        rec = record(n + 1, 1_776_182_531_600_000 + n, source, path_q, headers, body, verification)
        write("event_decode", name, rec)
    write("config_load", "hooklog.toml", (ROOT / "fixtures" / "hooklog.toml").read_bytes())
    write("config_load", "minimal.toml", b'data_dir = "./data"\n')
    for target in sorted(p.name for p in CORPUS.iterdir()):
        print(f"{target}: {len(list((CORPUS / target).iterdir()))} seed(s)")


if __name__ == "__main__":
    main()
