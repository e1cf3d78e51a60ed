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
import urllib.parse
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


# Bodies for `optout_classify` beyond the fixtures' texts: one of each rule of the classifier's
# module header (keywords, phrases, verb and noun, short messages, Spanish, lookalikes,
# normalisation cases) and the benign messages it must leave alone.
CLASSIFIER_BODIES = [
    "STOP", "Stop.", "stop all", "UNSUBSCRIBE", "cancel", "end", "quit", "revoke", "opt out",
    "opt-out", "START", "unstop", "Yes", "Yes!", "HELP", "info", "S.T.O.P", "\uff33\uff34\uff2f\uff30",
    "STOOOOP", "pleeease stop", "Don't! Stop!", "don't stop", "remove me", "take me off your list",
    "Do not text me again", "leave me alone", "lose my number", "wrong number", "opt me out",
    "stop texting me", "quit calling", "stop the f***ing texts", "no more messages",
    "end these texts", "stop sending me offers", "Stop, who is this?", "I said stop", "go away",
    "no m\u00e1s", "deja de escribirme", "no me escribas", "n\u00famero equivocado", "basta",
    "\U0001F6D1", "stop by the house at 3?", "can't stop thinking about that kitchen",
    "the bus stop on Alder St", "remove the old listing please", "Thanks, see you then",
    "subscribe", "un\u200bsubscribe",
]

# Bodies for `admin_json`: selector byte (as the target's match), then a body each route takes.
ADMIN_BODIES = [
    (0, {"source": "backfill-openphone", "route": "/v1/messages/ACm1",
         "headers": {"content-type": "application/json"}, "body": "{\"id\":\"ACm1\"}"}),
    (0, {"source": "backfill-twilio", "route": "/2010-04-01/Messages/SM1", "body": "e30=",
         "body_encoding": "base64"}),
    (1, {"to_seq": 0}),
    (1, {"since": "2026-04-14T00:00:00Z", "dry_run": True}),
    (1, {"to_seq": 12, "redeliver": True, "confirm": True, "max_redeliver": 5}),
    (2, {"on": True, "reason": "carrier filtering spike"}),
    (2, {"on": False}),
    (3, {"reason": "maintenance"}),
    (4, {"consumer": "dispatch", "seq": 42}),
    (4, {}),
    (5, {"number": "+15555550123", "reason": "asked by phone"}),
    (5, {"number": "(555) 555-0123"}),
    (6, {"reason": "A2P campaign approved on 2026-12-01"}),
    (7, {"from": "main", "to": "+15555550123", "content": "Your showing is at 3pm.",
         "idempotencyKey": "lead-42-reminder", "provider": "openphone"}),
    (7, {"from": "+15555550142", "to": "5555550123", "content": "Hi", "idempotency_key": "k",
         "provider": "twilio"}),
]

MSG = "msg_0000000000001000000000000a"
AT = "2026-04-14T16:02:11.600Z"

# Records for `outbound_decode`: (placement index, verification index, body), as the target's
# tables; one message's whole path, then the other kinds.
REQUEST = {"id": MSG, "idempotency_key": "lead-42", "from": "main", "provider": "openphone",
           "to": "+15555550123", "content": "Your showing is at 3pm.", "requested_at": AT,
           "requested_by": "operator"}
DECISION = {"id": MSG, "verdict": "allow", "reasons": [], "line_id": "main",
            "from_number": "+15555550142", "provider": "openphone", "to": "+15555550123",
            "evaluation": 1, "decided_at": AT}
HOLD = {"id": MSG, "verdict": "hold", "reasons": [{"code": "quiet_hours",
        "message": "quiet hours at the recipient"}], "hold_until": "2026-04-15T13:00:00Z",
        "evaluation": 1, "decided_at": AT}
ATTEMPT = {"id": MSG, "attempt": 1, "provider": "openphone", "from": "+15555550142",
           "to": "+15555550123", "at": AT}
RESULT = {"id": MSG, "attempt": 1, "status": "sent", "outcome": "accepted",
          "provider_id": "AC123", "tries": 1, "at": AT}
LINE = {"line_id": "main", "state": "blocked", "reason": "provider refused: 30034", "at": AT}
DISPATCH = {"seq": 7, "agent": "acquisitions", "idempotency_key": "hooklog-7", "kind": "message",
            "outcome": "delivered", "status": 200, "attempts": 1, "latency_ms": 120,
            "opted_out": False, "at": AT}
OPTOUT = {"action": "add", "number": "+15555550123", "reason": "asked by phone"}
CONTROL = {"action": "kill_switch", "on": True, "reason": "carrier filtering", "at": AT,
           "by": "operator"}
PAUSE = {"action": "pause", "consumer": "sender", "at": AT, "by": "operator"}
OUTBOUND_SEEDS = {
    "message_sent": [(0, 1, REQUEST), (1, 0, DECISION), (2, 0, ATTEMPT), (3, 0, RESULT)],
    "message_held": [(0, 2, REQUEST), (1, 0, HOLD), (1, 0, DECISION)],
    "line_blocked": [(4, 0, LINE), (4, 1, LINE)],
    "dispatch_result": [(5, 0, DISPATCH)],
    "optout_change": [(6, 1, OPTOUT), (6, 0, dict(OPTOUT, provider="twilio", line="main"))],
    "controls": [(7, 1, CONTROL), (7, 1, PAUSE), (7, 0, CONTROL)],
    "forged": [(3, 2, RESULT), (8, 0, LINE), (9, 0, REQUEST)],
}


def backfill_seeds():
    """Answers for `backfill_pages` in the order each recipe asks (see the target)."""
    a, line = "+15551110001", "+15555550142"
    day = "2026-04-14T"
    msg = lambda i, at: {"id": i, "object": "message", "from": a, "to": [line], "text": "hello",
                         "direction": "incoming", "status": "received", "createdAt": day + at,
                         "updatedAt": day + at, "userId": "US1", "phoneNumberId": "PN1"}
    call = {"id": "ACc1", "object": "call", "participants": [a], "direction": "incoming",
            "status": "completed", "createdAt": day + "10:00:00.000Z", "userId": "US1",
            "phoneNumberId": "PN1"}
    numbers = {"data": [{"id": "PN1", "number": line, "name": "Main",
                         "users": [{"id": "US1"}]}]}
    conversations = {"data": [{"id": "CN1", "phoneNumberId": "PN1", "participants": [a],
                               "updatedAt": day + "18:00:00.000Z"}], "nextPageToken": None}
    quo = [numbers, conversations,
           {"data": [msg("ACm1", "09:00:00.000Z")], "nextPageToken": "page2"},
           {"data": [msg("ACm2", "09:05:00.000Z")], "nextPageToken": None},
           {"data": [call], "nextPageToken": None},
           {"data": {"callId": "ACc1", "status": "completed", "summary": ["asked for a quote"]}},
           {"data": {"callId": "ACc1", "dialogue": [{"content": "hello", "start": 0, "end": 1,
                                                     "identifier": a}]}}]
    workspace = [numbers,
                 {"data": [msg("ACm3", "11:00:00.000Z"), msg("ACm0", "2026-03-01T23:00:00.000Z")],
                  "nextCursor": "c2"},
                 conversations, {"data": [call], "nextPageToken": None}]
    sid = "AC00000000000000000000000000000001"
    tw_msg = lambda s: {"sid": s, "account_sid": sid, "from": a, "to": line, "body": "hello",
                        "status": "received", "direction": "inbound",
                        "date_sent": "Tue, 14 Apr 2026 09:00:00 +0000"}
    twilio = [{"messages": [tw_msg("SM1"), tw_msg("SM2")],
               "next_page_uri": f"/2010-04-01/Accounts/{sid}/Messages.json?PageSize=2&Page=1"},
              {"messages": [tw_msg("SM3")], "next_page_uri": None},
              {"calls": [{"sid": "CA1", "account_sid": sid, "from": a, "to": line,
                          "status": "completed", "start_time": "Tue, 14 Apr 2026 10:00:00 +0000"}],
               "next_page_uri": None}]
    enc = lambda answers: b"\x1e".join(json.dumps(x).encode() for x in answers)
    return {"quo_recipe": b"\x00" + enc(quo), "quo_workspace": b"\x02" + enc(workspace),
            "twilio_recipe": b"\x01" + enc(twilio)}


def texts(value):
    """Every message text in a JSON body (`body`, `text`, `content` strings)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("body", "text", "content") and isinstance(v, str):
                yield v
            else:
                yield from texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from texts(v)


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
        # The classifier's input: Twilio's OptOutType and Body, every text of a JSON body.
        if provider == "twilio":
            form = dict(urllib.parse.parse_qsl(fx["body"]))
            if "Body" in form:
                write("optout_classify", name,
                      form.get("OptOutType", "").encode() + b"\n" + form["Body"].encode())
        else:
            try:
                for i, text in enumerate(texts(json.loads(fx["body"]))):
                    write("optout_classify", f"{name}_{i}", b"\n" + text.encode())
            except ValueError:
                pass
        head = [path_q] + [f"{k}: {v}" for k, v in h.items()]
        write("edge_verify", name, "\n".join(head).encode() + b"\n\n" + body)
        headers = sorted((k, v) for k, v in h.items() if k != "user-agent")
        rec = record(n + 1, 1_776_182_531_600_000 + n, source, path_q, headers, body, verification)
        write("event_decode", name, rec)
    write("config_load", "hooklog.toml", (ROOT / "fixtures" / "hooklog.toml").read_bytes())
    write("config_load", "minimal.toml", b'data_dir = "./data"\n')
    for i, text in enumerate(CLASSIFIER_BODIES):
        write("optout_classify", f"phrase_{i:02}", b"\n" + text.encode())
    for i, (selector, body) in enumerate(ADMIN_BODIES):
        write("admin_json", f"body_{i:02}", bytes([selector]) + json.dumps(body).encode())
    for name, records in OUTBOUND_SEEDS.items():
        write("outbound_decode", name, b"\x1e".join(
            bytes([p, v]) + json.dumps(body).encode() for p, v, body in records))
    for name, data in backfill_seeds().items():
        write("backfill_pages", name, data)
    for target in sorted(p.name for p in CORPUS.iterdir()):
        print(f"{target}: {len(list((CORPUS / target).iterdir()))} seed(s)")


if __name__ == "__main__":
    main()
