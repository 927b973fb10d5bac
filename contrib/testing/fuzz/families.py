"""The seven families of cases (:data:`~.cases.FAMILIES`), the strategy of
each, and the known cases every run starts with."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

from hypothesis import strategies as st

from .cases import (
    BODY,
    BYSTANDER,
    EIO_POLLING,
    EIO_WS,
    EVENTS,
    HEAD,
    INTRUDER,
    INTRUSIONS,
    PLACEHOLDER,
    PLUGIN_EVENTS,
    PLUGIN_TEMPLATES,
    PROFILE_INTRUSIONS,
    PROFILE_TEMPLATES,
    PROFILED,
    SID,
    TENANT,
    TENANT_FENCE,
    TICKET,
    WS_FRAMES,
    Case,
    envelopes,
    event_payloads,
    json_or_deep,
    json_texts,
    latin1,
    latin1_texts,
    plausible_events,
    split_writes,
)

# --- (a) request heads ---

METHODS = ["GET", "GET", "GET", "POST", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH",
           "CONNECT", "TRACE", "PRI", "get", "", "G\xb2T", "GET\x00", "\xff"]
PATHS = ["/health", "/ready", "/metrics", "/api/v1/stats", "/api/v1/emit", "/ws",
         "/ws?token=@TOKEN@", "/socket.io/?EIO=4&transport=polling",
         "/socket.io/?EIO=4&transport=websocket&token=@TOKEN@",
         "/socket.io/?EIO=3&transport=polling", "/socket.io/?EIO=4&transport=polling&sid=x",
         "/socket.io/", "/api/v1/presence/fuzz", "/api/v1/presence/fuzz/bystander",
         "/api/v1/notifications/fuzz/bystander?limit=x", "/api/v1/conversations/c1?tenant=fuzz",
         "/api/v1/handovers?tenant=fuzz&limit=x", "/api/v1/handovers/1?tenant=fuzz",
         "/api/v1/whatsapp/sessions?tenant=fuzz", "/api/v1/whatsapp/webhooks/fuzz/main",
         "/api/v1/whatsapp/webhooks/fuzz/main?hub.mode=subscribe&hub.challenge=1",
         "/", "//ws", "/ws/", "/%77s", "/ws#x", "/ws?token=%ZZ", "/%", "/a%00b", "/\xb2",
         "/?" + "a" * 3000, "/ws?token=@TOKEN@&token=x"]
#: Hosts for absolute-form targets and Host headers: bracketed IPv6 literals,
#: broken or not, and names IDNA encoding refuses (empty or too long labels).
HOSTS = ["127.0.0.1", "localhost", "127.0.0.1:99999", "127.0.0..1", "..", ".", "a..b", "",
         "xn--", "x" * 64 + ".test", "\xe9.test", "\xff", "ex ample", "user@host", "host:1:2",
         "host\x00", "host/", "h?st"]
#: IPv6 literals, well-formed or not (an unclosed bracket, no address inside).
IPV6_HOSTS = ["[::1]", "[::1", "::1]", "[", "]", "[zz]", "[::1]:80", "[::1]:x", "[v1.x]",
              "[::ffff:127.0.0.1]", "[::1:80", "[fe80::1%eth0]"]
SCHEMES = ["http://", "http://", "https://", "ws://", "HTTP://", "//", "http:/", "http:///"]
VERSIONS = ["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "http/1.1",
                               "HTTP/1.1 ", "HTTP/1.\xb2", "HTTP/\xb9.1", "", "HTTP/1.1\x00",
                               "ICE/1.0"]
HEADER_NAMES = ["Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade",
                "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions",
                "Sec-WebSocket-Protocol", "Authorization", "X-API-Key", "Origin", "Expect",
                "Content-Type", "Cookie", "HTTP2-Settings", "Access-Control-Request-Headers",
                "X-Forwarded-For", "Host ", " Host", "Ho\xb2st", "", "Content-Length\x00",
                "X-\xff"]
HEADER_VALUES = ["", "0", "5", "-1", "\xb2", "\xb9", "1\xb2", "99999999999999999999",
                 "chunked", "websocket", "Upgrade", "close", "keep-alive", "h2c",
                 "dGhlIHNhbXBsZSBub25jZQ==", "13", "8", "permessage-deflate; x=\xff",
                 "Bearer @KEY@", "Bearer @TOKEN@", "Bearer", "@KEY@", "http://[::1",
                 "100-continue", "application/json", "\xff\xfe", "a\x00b", "x" * 500,
                 # (X-Forwarded-For: the fuzz server trusts 127.0.0.1, see fuzz_config)
                 "203.0.113.7, unknown", "[::1]:80, 1.2.3.4:5", ",,,", "::ffff:127.0.0.1",
                 '"[2001:db8::1"', "10.0.0.1 , 300.1.1.1", ", " * 200]
UPGRADE_LINES = ["Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]


@st.composite
def _target(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    path = draw(st.sampled_from(PATHS))
    if kind <= 3:  # absolute-form, often with an IPv6 literal
        hosts = IPV6_HOSTS if draw(st.booleans()) else HOSTS
        return draw(st.sampled_from(SCHEMES)) + draw(st.sampled_from(hosts)) + path
    if kind == 4:
        return draw(st.sampled_from(["*", "", "127.0.0.1:8080", "[::1]:8080", "[::1:80"]))
    if kind == 5:
        return path + draw(latin1_texts(12))
    return path


@st.composite
def _header_line(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(latin1_texts(30))  # anything, colon or not
    if kind == 1:
        return " " + draw(st.sampled_from(HEADER_VALUES))  # obsolete line folding
    name = draw(st.one_of(st.sampled_from(HEADER_NAMES), latin1_texts(10, min_size=1)))
    value = draw(st.one_of(st.sampled_from(HEADER_VALUES), latin1_texts(20)))
    return f"{name}:{draw(st.sampled_from(['', ' ', '  ', chr(9)]))}{value}"


@st.composite
def _request_head(draw: st.DrawFn) -> Case:
    method = draw(st.sampled_from(METHODS))
    target = draw(_target())
    version = draw(st.sampled_from(VERSIONS))
    sep = draw(st.sampled_from([" "] * 8 + ["  ", "\t"]))
    lines = [sep.join([method, target, version])]
    host = None
    if draw(st.integers(0, 9)) > 0:
        host = draw(st.sampled_from(HOSTS + IPV6_HOSTS))
        lines.append(f"Host: {host}")
    if draw(st.integers(0, 3)) == 0:
        lines += UPGRADE_LINES[:draw(st.integers(1, 4))]
    lines += draw(st.lists(_header_line(), max_size=4))
    eol = draw(st.sampled_from(["\r\n"] * 9 + ["\n"]))
    head = eol.join(lines) + "\r\n\r\n"
    body = latin1(draw(latin1_texts(8))) if draw(st.integers(0, 4)) == 0 else b""
    label = f"{method!r} {target!r} {version!r} host={host!r}, {len(lines) - 1} header lines"
    return Case(HEAD, label, split_writes(draw, latin1(head) + body))


VALID_REQUESTS = [
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /ws?token=@TOKEN@ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",
    b"GET /socket.io/?EIO=4&transport=polling&token=@TOKEN@ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST /api/v1/emit HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer @KEY@\r\n"
    b"Content-Length: 42\r\n\r\n"
    b'{"event":"x","tenant":"fuzz","data":[1,2]}',
    b"GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: @KEY@\r\n\r\n",
]
MUTATION_BYTES = [b"\x00", b"\r", b"\n", b"\r\n", b" ", b":", b"\xb2", b"\xff", b"[", b"]",
                  b"%", b"/", b"?", b"\t", b"0", b"9" * 20, b"-"]


@st.composite
def _mutated_request(draw: st.DrawFn) -> Case:
    data = bytearray(draw(st.sampled_from(VALID_REQUESTS)))
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        what = draw(st.one_of(st.sampled_from(MUTATION_BYTES), st.binary(min_size=1, max_size=3)))
        mode = draw(st.sampled_from(["insert", "replace", "delete"]))
        if mode == "insert":
            data[pos:pos] = what
        elif mode == "replace":
            data[pos:pos + len(what)] = what
        else:
            del data[pos:pos + len(what)]
        edits.append(f"{mode} {what!r} at {pos}")
    return Case(HEAD, "mutated valid request: " + ", ".join(edits), split_writes(draw, bytes(data)))


@st.composite
def _any_head(draw: st.DrawFn) -> Case:
    kind = draw(st.integers(0, 9))
    if kind < 6:
        return draw(_request_head())
    if kind < 9:
        return draw(_mutated_request())
    return Case(HEAD, "random bytes", (draw(st.binary(max_size=40)) + b"\r\n\r\n",))


def request_heads() -> st.SearchStrategy[Case]:
    """(a) Request heads: request line, method, target, version, headers, Host."""
    return _any_head()


# --- (b) bodies: Content-Length, Transfer-Encoding ---

ROUTES = ["/api/v1/emit"] * 4 + ["/api/v1/notifications", "/api/v1/conversations",
                                 "/api/v1/conversations/c1/messages", "/api/v1/handovers",
                                 "/api/v1/whatsapp/sessions", "/api/v1/whatsapp/webhooks/fuzz/main",
                                 "/api/v1/tickets", "/api/v1/tickets/bulk", "/api/v1/leads",
                                 "/socket.io/?EIO=4&transport=polling&sid=@SID@",
                                 "/socket.io/?EIO=4&transport=polling&sid=@SID@"]
#: Content-Length values; ``None`` is the body's real length. '\xb2', '\xb3' and
#: '\xb9' are digits to str.isdigit() and not to int().
CONTENT_LENGTHS: list[str | None] = [
    None, None, None, None, "+1", "0", "", "-1", " 1", "1 ", "0x10", "1e3", "1.0", "1_0",
    "\xb2", "\xb3", "\xb9", "1\xb2", "99999999999999999999999", "4194305", "4194304",
    "0000000000000000000000001", "5, 5", "5,6", "\xef\xbc\x95"]
TRANSFER_ENCODINGS = [None] * 8 + ["chunked", "chunked", "Chunked", "chunked ", "gzip, chunked",
                                   "chunked, gzip", "identity", "", "\xb2", "chunked\x00"]
CHUNK_SIZES = [None, None, None, "ffffffffffffffffffff", "-1", "0x5", "5;ext=1", "\xb2", "",
               " 5", "5 ", "+5", "00000000000000000005"]


@st.composite
def _emit_text(draw: st.DrawFn) -> str:
    fields = {"event": json.dumps(draw(st.sampled_from(["ticket:updated", "x", ""]))),
              "tenant": json.dumps(draw(st.sampled_from([TENANT, TENANT, "other", ""]))),
              "data": draw(json_or_deep())}
    where = draw(st.sampled_from(["", "", "user", "room", "both"]))
    if where in ("user", "both"):
        fields["user"] = json.dumps(BYSTANDER)
    if where in ("room", "both"):
        fields["room"] = draw(st.sampled_from(['"lead:1"', '"user:x"', '""', "1", '"a b"']))
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


@st.composite
def _fields(draw: st.DrawFn, fields: dict[str, str]) -> str:
    """A JSON object of ``fields`` (name: a plausible value as JSON text), each
    plausible, missing or fuzzed (most of them plausible, so that whole
    objects are accepted too)."""
    parts = []
    for name, plausible in fields.items():
        kind = draw(st.integers(0, 9))
        if kind == 0:
            continue  # missing
        parts.append(f'"{name}":' + (draw(json_texts) if kind == 1 else plausible))
    return "{" + ",".join(parts) + "}"


TICKET_FIELDS = {"tenant": '"fuzz"', "subject": '"s"', "customerId": '"bystander"',
                 "priority": '"high"', "channel": '"whatsapp"', "tags": '["a"]',
                 "message": '{"text":"hi","clientId":"k1"}'}
LEAD_FIELDS = {"tenant": '"fuzz"', "title": '"t"', "contact": '{"email":"a@b.c"}',
               "value": "100", "fields": '{"k":1}', "tags": '["a"]', "stageId": '"novo"'}


@st.composite
def _json_body(draw: st.DrawFn, route: str) -> str:
    if "/socket.io/" in route:
        return draw(_polling_body_text())
    if route == "/api/v1/emit":
        if draw(st.integers(0, 4)) == 0:
            return "[" + ",".join(draw(st.lists(_emit_text(), max_size=3))) + "]"
        return draw(_emit_text())
    if route == "/api/v1/handovers":
        return ('{"tenant":"fuzz","leadId":"c1","requestedBy":' + draw(json_texts)
                + ',"priority":' + draw(json_texts) + "}")
    if route == "/api/v1/whatsapp/sessions":
        return ('{"tenant":"fuzz","id":"main","provider":' + draw(json_texts)
                + ',"bridge":' + draw(json_texts) + "}")
    if route.startswith("/api/v1/whatsapp/webhooks/"):
        return '{"event":"qrcode.updated","apikey":' + draw(json_texts) + ',"data":{}}'
    if route == "/api/v1/tickets":  # (the desk's JSON fast path)
        return draw(_fields(TICKET_FIELDS))
    if route == "/api/v1/tickets/bulk":
        return '{"tickets":[' + ",".join(draw(st.lists(_fields(TICKET_FIELDS), max_size=3))) + "]}"
    if route == "/api/v1/leads":
        return draw(_fields(LEAD_FIELDS))
    if route == "/api/v1/notifications":
        return ('{"tenant":"fuzz","user":"bystander","title":' + draw(json_texts)
                + ',"message":"m","data":' + draw(json_texts) + "}")
    return ('{"tenant":"fuzz","conversationId":"c1","participants":' + draw(json_texts)
            + ',"content":' + draw(json_texts) + "}")


def _chunked(draw: st.DrawFn, body: bytes) -> tuple[bytes, str]:
    pieces: list[bytes] = []
    notes = []
    rest = body
    while rest:
        size = draw(st.integers(1, max(1, len(rest))))
        piece, rest = rest[:size], rest[size:]
        line = draw(st.sampled_from(CHUNK_SIZES))
        if line is not None:
            notes.append(repr(line))
        size_line = latin1(f"{len(piece):x}" if line is None else line)
        pieces.append(size_line + b"\r\n" + piece + b"\r\n")
    ending = draw(st.sampled_from([b"0\r\n\r\n"] * 4 + [b"", b"0\r\nX: y\r\n\r\n", b"0\r\n",
                                                         b"\xb2\r\n\r\n"]))
    return b"".join(pieces) + ending, f"chunk sizes {notes or 'correct'}, end {ending!r}"


@st.composite
def _request_body(draw: st.DrawFn) -> Case:
    route = draw(st.sampled_from(ROUTES))
    method = draw(st.sampled_from(["POST"] * 6 + ["PUT", "GET"]))
    version = draw(st.sampled_from(["HTTP/1.1"] * 4 + ["HTTP/1.0"]))
    if draw(st.integers(0, 5)) == 0:
        body = draw(st.binary(max_size=30))
        json_body = None
    else:
        body = draw(_json_body(route)).encode("utf-8", "surrogatepass")
        json_body = None if "/socket.io/" in route else body
    lines = [f"{method} {route} {version}", "Host: 127.0.0.1"]
    auth = draw(st.sampled_from(["Authorization: Bearer @KEY@"] * 4
                                + ["X-API-Key: @KEY@", "Authorization: Bearer nope", ""]))
    if auth:
        lines.append(auth)
    if route.startswith("/socket.io/"):
        lines.append("Content-Type: text/plain;charset=UTF-8")
    else:
        lines.append("Content-Type: application/json")
    lengths = draw(st.lists(st.sampled_from(CONTENT_LENGTHS), max_size=2))
    if not lengths and draw(st.integers(0, 2)) > 0:
        lengths = [None]
    encoding = draw(st.sampled_from(TRANSFER_ENCODINGS))
    described = []
    for length in lengths:
        value = str(len(body)) if length is None else length
        lines.append(f"Content-Length: {value}")
        described.append(value)
    sent = body
    chunk_note = ""
    if encoding is not None:
        lines.append(f"Transfer-Encoding: {encoding}")
        if "chunked" in encoding.lower():
            sent, chunk_note = _chunked(draw, body)
    extra = draw(st.sampled_from(["", "", "", "Expect: 100-continue", "Connection: close",
                                  "Connection: keep-alive"]))
    if extra:
        lines.append(extra)
    trailer = draw(st.sampled_from([b""] * 4 + [
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"POST /api/v1/emit HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n"]))
    data = latin1("\r\n".join(lines) + "\r\n\r\n") + sent + trailer
    label = (f"{method} {route} {version}, Content-Length {described or 'absent'}, "
             f"Transfer-Encoding {encoding!r}{', ' + chunk_note if chunk_note else ''}"
             f"{', ' + extra if extra else ''}{', then another request' if trailer else ''}")
    setup = "eio-polling+connect" if SID in data else "raw"
    return Case(BODY, label, split_writes(draw, data), setup=setup, json_body=json_body)


def request_bodies() -> st.SearchStrategy[Case]:
    """(b) Request bodies and their framing on the emit fast path, plugin routes
    and the Engine.IO polling path."""
    return _request_body()


# --- (c) WebSocket frames ---

CLOSE_CODES = [1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012,
               1015, 1016, 999, 0, 2999, 3000, 3999, 4000, 4999, 5000, 65535]


def ws_frame(payload: bytes, opcode: int = 0x1, *, fin: bool = True, rsv: int = 0,
             mask: bytes | None = b"\x00\x00\x00\x00", length: int | None = None,
             length_form: int | None = None) -> bytes:
    """A client frame; ``length``/``length_form`` (7, 16 or 64 bits) may lie."""
    declared = len(payload) if length is None else length
    form = length_form or (7 if declared < 126 else 16 if declared < 65536 else 64)
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)])
    mask_bit = 0x80 if mask is not None else 0
    if form == 7:
        head += bytes([mask_bit | min(declared, 125)])
    elif form == 16:
        head += bytes([mask_bit | 126]) + (declared & 0xFFFF).to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + (declared & (2**64 - 1)).to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@st.composite
def _frame_payload(draw: st.DrawFn, opcode: int, engineio: bool) -> bytes:
    if opcode == 0x8:  # close
        kind = draw(st.integers(0, 5))
        if kind == 0:
            return b""
        if kind == 1:
            return draw(st.binary(min_size=1, max_size=1))
        reason = draw(st.one_of(st.text(max_size=10).map(str.encode),
                                st.sampled_from([b"\xff\xfe", b"\xc3", b"x" * 124])))
        return draw(st.sampled_from(CLOSE_CODES)).to_bytes(2, "big") + reason
    if opcode in (0x9, 0xA):
        return draw(st.one_of(st.binary(max_size=20), st.binary(min_size=126, max_size=130)))
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=20))
    if kind == 1:
        return draw(st.sampled_from([b"\xff\xfe", b'{"type":"ping","data":"\xc3"}',
                                     b"\xed\xa0\x80"]))
    if engineio:
        return draw(_engineio_record()).encode("utf-8", "surrogatepass")
    return draw(envelopes()).encode("utf-8", "surrogatepass")


@st.composite
def _frames(draw: st.DrawFn, engineio: bool) -> tuple[bytes, list[str]]:
    out, notes = [], []
    for _ in range(draw(st.integers(1, 4))):
        opcode = draw(st.sampled_from([0x1] * 6 + [0x2, 0x0, 0x0, 0x8, 0x8, 0x9, 0xA, 0x3, 0xB,
                                                   0xF]))
        payload = draw(_frame_payload(opcode, engineio))
        fin = draw(st.integers(0, 4)) > 0
        rsv = draw(st.sampled_from([0] * 8 + [1, 2, 4, 7]))
        mask = None if draw(st.integers(0, 9)) == 0 else draw(st.binary(min_size=4, max_size=4))
        lie = draw(st.integers(0, 9))
        length = length_form = None
        if lie == 0:
            length = draw(st.sampled_from([len(payload) + 1, len(payload) + 1000, 2**31, 2**63,
                                           2**64 - 1, 65536 + 1, 1_000_001]))
        elif lie == 1:
            length_form = draw(st.sampled_from([16, 64]))
        out.append(ws_frame(payload, opcode, fin=fin, rsv=rsv, mask=mask, length=length,
                            length_form=length_form))
        notes.append(f"op={opcode:#x}{'' if fin else ' !fin'}{f' rsv={rsv}' if rsv else ''}"
                     f"{' unmasked' if mask is None else ''}"
                     f"{f' len={length}' if length is not None else ''}"
                     f"{f' {length_form}-bit' if length_form else ''} {payload[:24]!r}")
    return b"".join(out), notes


@st.composite
def _websocket_frames(draw: st.DrawFn) -> Case:
    engineio = draw(st.integers(0, 3)) == 0
    data, notes = draw(_frames(engineio))
    if draw(st.integers(0, 9)) == 0:
        data += draw(st.binary(max_size=10))
        notes.append("trailing garbage")
    setup = draw(st.sampled_from(["eio-ws+connect", "eio-ws"])) if engineio else "ws"
    return Case(WS_FRAMES, "; ".join(notes), split_writes(draw, data), setup=setup)


def websocket_frames() -> st.SearchStrategy[Case]:
    """(c) Frames after a successful WebSocket handshake (on /ws, or on the
    Engine.IO WebSocket, which shares the frame reader)."""
    return _websocket_frames()


# --- (d) Engine.IO / Socket.IO packets ---

NAMESPACES = ["", "", "", "", "", "/,", "/nope,", "/a/b,", "/\xe4,", "/" + "x" * 300 + ",", "/"]
ACK_IDS = ["", "", "", "0", "1", "12", "9" * 16, "9" * 17, "-1", "9007199254740991",
           "9007199254740992", "\xb2"]


@st.composite
def socketio_texts(draw: st.DrawFn) -> str:
    """A Socket.IO packet as text, from the grammar's pieces, valid or not."""
    kind = draw(st.sampled_from([*"0123456", "2", "2", "2", "3", "7", "9", "x", "\xb2", ""]))
    attachments = ""
    if kind in ("5", "6") or draw(st.integers(0, 9)) == 0:
        attachments = draw(st.sampled_from(["1-", "0-", "2-", "11-", "99999999999-", "-",
                                            "\xb2-", ""]))
    namespace = draw(st.sampled_from(NAMESPACES))
    ack = draw(st.sampled_from(ACK_IDS))
    body_kind = draw(st.integers(0, 6))
    if kind in ("2", "5") and body_kind < 5:
        if body_kind < 3:
            event, data = draw(plausible_events())
            args = [json.dumps(event), data]
        else:
            args = [json.dumps(draw(st.sampled_from(EVENTS))), draw(event_payloads())]
        if kind == "5" or draw(st.integers(0, 5)) == 0:
            args.append(draw(st.sampled_from(['{"_placeholder":true,"num":0}',
                                              '{"_placeholder":true,"num":-1}',
                                              '{"_placeholder":true,"num":1e400}',
                                              '{"_placeholder":true,"num":99}'])))
        body = "[" + ",".join(args) + "]"
    elif kind == "0" and body_kind < 5:
        body = draw(st.sampled_from(["", '{"token":"not-a-token"}', '{"token":1}', "[]", "NaN",
                                     '{"pid":"x","offset":"y"}']))
    elif body_kind < 6:
        body = draw(json_or_deep())
    else:
        body = draw(st.text(max_size=12))
    return f"{kind}{attachments}{namespace}{ack}{body}"


@st.composite
def socketio_events(draw: st.DrawFn) -> str:
    """A well-formed Socket.IO EVENT of a known event, its data partly fuzzed."""
    event, data = draw(plausible_events())
    namespace = draw(st.sampled_from(["", "", "", "/nope,"]))
    ack = draw(st.sampled_from(["", "1", "7", "9007199254740991"]))
    return f"2{namespace}{ack}[{json.dumps(event)},{data}]"


@st.composite
def _engineio_record(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind < 4:
        return "4" + draw(socketio_events())
    if kind < 7:
        return "4" + draw(socketio_texts())
    if kind == 7:
        return "b" + draw(st.one_of(st.binary(max_size=12).map(
            lambda b: base64.b64encode(b).decode()), st.sampled_from(["!!", "a", "===", ""])))
    return draw(st.sampled_from(["2", "3", "3probe", "2probe", "5", "6", "1", "0", "0{}", "7",
                                 "", "x", "4", "\xb2"]))


@st.composite
def _polling_body_text(draw: st.DrawFn) -> str:
    return "\x1e".join(draw(st.lists(_engineio_record(), min_size=1, max_size=4)))


@st.composite
def _engineio_polling(draw: st.DrawFn) -> Case:
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=20))
    else:
        body = draw(_polling_body_text()).encode("utf-8", "surrogatepass")
    head = (b"POST /socket.io/?EIO=4&transport=polling&sid=@SID@ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n")
    setup = draw(st.sampled_from(["eio-polling+connect", "eio-polling+connect", "eio-polling"]))
    return Case(EIO_POLLING, f"POST body {body[:60]!r}", (head + body,), setup=setup)


def engineio_polling_cases() -> st.SearchStrategy[Case]:
    """(d) Engine.IO packets (records joined by \\x1e) in a polling POST."""
    return _engineio_polling()


@st.composite
def _engineio_websocket(draw: st.DrawFn) -> Case:
    setup = draw(st.sampled_from(["eio-ws+connect", "eio-ws+connect", "eio-ws", "eio-upgrade"]))
    frames, notes = [], []
    if setup == "eio-upgrade":
        dance = draw(st.sampled_from([["2probe", "5"], ["2probe"], ["5"], ["2probe", "5", "5"],
                                      []]))
        frames += [ws_frame(p.encode(), mask=b"\x01\x02\x03\x04") for p in dance]
        notes.append(f"upgrade {dance}")
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 5)) == 0:
            payload = draw(st.binary(max_size=16))
            frames.append(ws_frame(payload, 0x2, mask=b"\x01\x02\x03\x04"))
            notes.append(f"binary {payload!r}")
        else:
            text = draw(_engineio_record())
            frames.append(ws_frame(text.encode("utf-8", "surrogatepass"),
                                   mask=b"\x01\x02\x03\x04"))
            notes.append(repr(text[:60]))
    return Case(EIO_WS, "; ".join(notes), (b"".join(frames),), setup=setup)


def engineio_websocket_cases() -> st.SearchStrategy[Case]:
    """(d) Engine.IO / Socket.IO packets as frames of the Engine.IO WebSocket."""
    return _engineio_websocket()


# --- (e) the plugins' events ---


def _ws_namespace(ws_profile: str) -> str:
    """The namespace of the profile bound to the plain WebSocket ("/": none):
    the plain WebSocket speaks its events as well as the canonical ones."""
    return next((ns for ns, name in PROFILED.items() if name == ws_profile), "/")


def _event_text(plain: bool, namespace: str, ack: int, event: str, data: str,
                kind: str = "42") -> str:
    """One client event as the plain WebSocket's envelope, or as a Socket.IO
    packet (``kind`` 42, or 451- for one with a binary attachment)."""
    if plain:
        return f'{{"type":{json.dumps(event)},"data":{data},"id":{ack}}}'
    prefix = "" if namespace == "/" else namespace + ","
    return f"{kind}{prefix}{ack}[{json.dumps(event)},{data}]"


@st.composite
def _plugin_events(draw: st.DrawFn, ws_profile: str, setups: Sequence[str]) -> Case:
    setup = draw(st.sampled_from(setups))
    frames, notes = [], []
    ws_namespace = _ws_namespace(ws_profile)
    for n in range(draw(st.integers(1, 5))):
        namespace = ws_namespace if setup == "ws" else draw(st.sampled_from(["/", *PROFILED]))
        templates = PLUGIN_TEMPLATES + PROFILE_TEMPLATES.get(namespace, [])
        if draw(st.integers(0, 7)) == 0:
            event, data = draw(st.sampled_from(templates))[0], draw(event_payloads())
        else:
            event, data = draw(plausible_events(templates, binary=setup != "ws"))
        attachment = None
        if setup != "ws" and PLACEHOLDER in data:  # its attachment in the next frame
            attachment = draw(st.sampled_from([b"", b"\x00\xff", b"hi", b'{"a":1}']))
        text = _event_text(setup == "ws", namespace, n + 1, event, data,
                           "42" if attachment is None else "451-")
        # (unmasked, so that the ticket's placeholder is found and rendered)
        frames.append(ws_frame(text.encode("utf-8", "surrogatepass"), mask=b"\0\0\0\0"))
        notes.append(repr(text[:80]))
        if attachment is not None:
            frames.append(ws_frame(attachment, 0x2, mask=b"\0\0\0\0"))
            notes.append(f"attachment {attachment!r}")
    return Case(PLUGIN_EVENTS, "; ".join(notes), (b"".join(frames),), setup=setup)


def plugin_event_cases(ws_profile: str = "", *, plain_only: bool = False,
                       ) -> st.SearchStrategy[Case]:
    """(e) The plugins' events, canonical and through the compatibility profiles,
    over the plain WebSocket (a third of the cases, or all with ``plain_only``)
    and Socket.IO; ``ws_profile`` is the profile the target binds to its plain
    WebSocket (see :func:`fuzz_config`), whose own events the plain WebSocket
    cases then send too."""
    return _plugin_events(ws_profile, ["ws"] if plain_only
                          else ["ws", "eio-ws+profiles", "eio-ws+profiles"])


# --- (f) the tenant fence ---


@st.composite
def _intrusions(draw: st.DrawFn, ws_profile: str) -> Case:
    # An admin of another tenant (who may bear the name of the fuzz tenant's
    # user), or a customer of the fuzz tenant who is party to none of its
    # things: one with a token, or a guest of its widget (anyone can be one).
    tenant, role = draw(st.sampled_from([(INTRUDER, "admin"), (INTRUDER, "admin"),
                                         (TENANT, "customer"), (TENANT, "guest")]))
    setup = "ws-guest" if role == "guest" else draw(st.sampled_from(["ws", "eio-ws+profiles"]))
    user = draw(st.sampled_from(["", "", BYSTANDER])) if tenant == INTRUDER else ""
    ws_namespace = _ws_namespace(ws_profile)
    frames, notes = [], []
    for n in range(draw(st.integers(1, 6))):
        namespace = ws_namespace if setup.startswith("ws") else draw(
            st.sampled_from(["/", *PROFILED]))
        event, data = draw(plausible_events(
            INTRUSIONS + PROFILE_INTRUSIONS.get(namespace, []), fuzzed=False))
        text = _event_text(setup.startswith("ws"), namespace, n + 1, event, data)
        frames.append(ws_frame(text.encode(), mask=b"\0\0\0\0"))  # (the ticket rendered)
        notes.append(repr(text[:80]))
    return Case(TENANT_FENCE, "; ".join(notes), (b"".join(frames),), setup=setup,
                tenant=tenant, role=role, user=user)


_TID = TICKET.decode()
#: Requests of the HTTP API on the fuzz tenant's things: (method, path, body).
#: Where the tenant goes: ``{q}`` (``?tenant=fuzz``) and ``{t}`` (a body's
#: ``"tenant":"fuzz",``), or nothing in either (the intruder key's own tenant
#: then); ``{p}`` where it is in the path (always named).
HTTP_INTRUSIONS: list[tuple[str, str, str | None]] = [
    ("GET", f"/api/v1/tickets/{_TID}{{q}}", None),
    ("GET", "/api/v1/tickets{q}", None),
    ("PATCH", f"/api/v1/tickets/{_TID}", '{{t}"subject":"x","version":1}'),
    ("POST", f"/api/v1/tickets/{_TID}/assign", '{{t}"assigneeId":"bystander"}'),
    ("POST", f"/api/v1/tickets/{_TID}/close", '{{t}"note":"n"}'),
    ("POST", f"/api/v1/tickets/{_TID}/reopen", '{{t}"note":"n"}'),
    ("POST", f"/api/v1/tickets/{_TID}/transfer", '{{t}"queueId":"support"}'),
    ("POST", "/api/v1/tickets", '{{t}"subject":"x","customerId":"bystander"}'),
    ("POST", "/api/v1/tickets/bulk", '{"tickets":[{{t}"subject":"x","customerId":"b"}]}'),
    ("GET", "/api/v1/agents{q}", None),
    ("GET", "/api/v1/queues{q}", None),
    ("POST", "/api/v1/queues", '{{t}"id":"support","members":[{"userId":"intruder"}]}'),
    ("DELETE", "/api/v1/queues/support{q}", None),
    ("PUT", "/api/v1/queues/support/members/bystander{q}", '{{t}"capacity":1}'),
    ("GET", "/api/v1/conversations/c1{q}", None),
    ("GET", "/api/v1/conversations/c1/messages{q}", None),
    ("POST", "/api/v1/conversations/c1/messages",
     '{{t}"senderId":"intruder","content":{"text":"intruder"}}'),
    ("POST", "/api/v1/conversations/c1/participants", '{{t}"userId":"intruder"}'),
    ("DELETE", "/api/v1/conversations/c1/participants/bystander{q}", None),
    ("POST", "/api/v1/conversations", '{{t}"id":"c1","title":"intruder"}'),
    ("GET", "/api/v1/leads/1{q}", None),
    ("GET", "/api/v1/leads/1/activity{q}", None),
    ("PATCH", "/api/v1/leads/1", '{{t}"changes":{"title":"intruder"}}'),
    ("POST", "/api/v1/leads/1/move", '{{t}"stageId":"ganho"}'),
    ("POST", "/api/v1/leads/1/assign", '{{t}"ownerId":"intruder"}'),
    ("DELETE", "/api/v1/leads/1{q}", None),
    ("GET", "/api/v1/pipelines{q}", None),
    ("GET", "/api/v1/pipelines/default/stages/novo/leads{q}", None),
    ("GET", "/api/v1/notifications/{p}/bystander", None),
    ("POST", "/api/v1/notifications",
     '{{t}"user":"bystander","title":"intruder","message":"intruder"}'),
    ("GET", "/api/v1/presence/{p}", None),
    ("GET", "/api/v1/presence/{p}/bystander", None),
    ("GET", "/api/v1/handovers{q}", None),
    ("GET", "/api/v1/handovers/1{q}", None),
    ("POST", "/api/v1/handovers", '{{t}"leadId":"c1","requestedBy":"intruder"}'),
    ("POST", "/api/v1/handovers/1/accept", '{{t}"agentId":"intruder"}'),
    ("GET", "/api/v1/webhooks{q}", None),
    ("POST", "/api/v1/webhooks/dead/retry", '{{t}"all":true}'),
    ("GET", "/api/v1/whatsapp/sessions{q}", None),
    ("GET", "/api/v1/whatsapp/sessions/main{q}", None),
    ("POST", "/api/v1/whatsapp/sessions/main/start", '{{t}}'),
    ("DELETE", "/api/v1/whatsapp/sessions/main{q}", None),
    ("GET", "/api/v1/whatsapp/messages/1{q}", None),
    ("POST", "/api/v1/emit", '{{t}"event":"x","data":"intruder"}'),
    ("POST", "/api/v1/emit", '{{t}"event":"x","room":"lead:1","data":"intruder"}'),
    ("POST", "/api/v1/emit", '[{"tenant":"intruder","event":"x"},{{t}"event":"x",'
                             '"user":"bystander","data":"intruder"}]'),
    ("GET", "/api/v1/stats", None),
]


@st.composite
def _http_intrusions(draw: st.DrawFn) -> Case:
    method, path, body = draw(st.sampled_from(HTTP_INTRUSIONS))
    # (not named: the key's own tenant)
    named = "{p}" in path or (("{q}" in path or "{t}" in (body or "")) and draw(st.booleans()))
    path = path.replace("{q}", f"?tenant={TENANT}" if named else "").replace("{p}", TENANT)
    if body is not None:
        body = body.replace("{t}", f'"tenant":"{TENANT}",' if named else "")
        body = body.replace(",}", "}")
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: @IKEY@\r\n"
            "Connection: close\r\n")
    data = (head + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    + body if body is not None else "\r\n")).encode()
    return Case(TENANT_FENCE, f"{method} {path} {body or ''}".strip(), (data,), tenant=INTRUDER,
                role="admin", forbidden=named)


def intruder_cases(ws_profile: str = "") -> st.SearchStrategy[Case]:
    """(f) An admin of another tenant (:data:`INTRUDER`), over the plain
    WebSocket or Socket.IO (every profiled namespace connected), sends valid
    requests that name the fuzz tenant's ticket, lead, conversation, rooms and
    user (:data:`INTRUSIONS`); sometimes the intruder's user id is the fuzz
    tenant's bystander's. Or, with an API key of the intruder's tenant, a
    request of the HTTP API on the fuzz tenant's things
    (:data:`HTTP_INTRUSIONS`), naming the fuzz tenant or not. What the runner
    checks after each: see :meth:`FrontDoor._leaks`."""
    return st.one_of(_intrusions(ws_profile), _http_intrusions())


def strategy_for(family: str, ws_profile: str = "") -> st.SearchStrategy[Case]:
    if family == PLUGIN_EVENTS:
        return plugin_event_cases(ws_profile)
    if family == TENANT_FENCE:
        return intruder_cases(ws_profile)
    return {HEAD: request_heads, BODY: request_bodies, WS_FRAMES: websocket_frames,
            EIO_POLLING: engineio_polling_cases, EIO_WS: engineio_websocket_cases}[family]()


def _emit_case(label: str, body: bytes, content_length: bytes | None = None) -> Case:
    length = str(len(body)).encode() if content_length is None else content_length
    return Case(BODY, label, (b"POST /api/v1/emit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Authorization: Bearer @KEY@\r\nContent-Length: " + length
                              + b"\r\n\r\n" + body,), json_body=body)


_UPGRADE = (b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")

#: Inputs known to break the server (or that did), as explicit examples.
KNOWN: dict[str, Case] = {
    "ipv6 target": Case(HEAD, "absolute-form target with an unclosed IPv6 literal",
                        (b"GET http://[::1/ HTTP/1.1\r\n\r\n",)),
    "superscript length": Case(BODY, "Content-Length '\\xb2' (a digit to str.isdigit only)",
                               (b"POST /api/v1/emit HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",)),
    "bad host": Case(HEAD, "Host header with an empty label",
                     (b"GET /health HTTP/1.1\r\nHost: 127.0.0..1\r\n\r\n",)),
    "nan emit": _emit_case("emit with NaN data, to the bystander's tenant",
                           b'{"event":"x","tenant":"fuzz","data":NaN}'),
    "infinity emit": _emit_case("emit with an overflowing number (2e308 is inf in Python)",
                                b'{"event":"x","tenant":"fuzz","data":[2e308,-Infinity]}'),
    "nan ping": Case(WS_FRAMES, "ping envelope with NaN data (echoed in the pong)",
                     (ws_frame(b'{"type":"ping","data":NaN}'),), setup="ws"),
    "ipv6 target not an address": Case(
        HEAD, "absolute-form target with a bracketed host that is no IP address",
        (b"GET http://[zz]/ HTTP/1.1\r\n\r\n",)),
    "pipelined after http/1.0": Case(
        BODY, "HTTP/1.0 request with a body, then another request on the same connection "
        "(hypercorn's close races its error answer: BusyResourceError)",
        (b"GET /api/v1/emit HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}"
         b"GET /health HTTP/1.1\r\n\r\n",)),
    "upgrade to an http path": Case(
        HEAD, "WebSocket upgrade to a path that is not a WebSocket one, then a byte "
        "(hypercorn's own WebSocket handling breaks)",
        (b"GET /health HTTP/1.1\r\nHost: x\r\n" + _UPGRADE + b"\r\nx",)),
    "non-ascii connection header": Case(
        HEAD, "WebSocket upgrade on /ws with a non-ASCII byte in Connection (wsproto decodes "
        "it as ASCII)",
        (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\xda\r\n"
         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",)),
    "non-ascii host on upgrade": Case(
        HEAD, "WebSocket upgrade on /ws with a non-ASCII byte in Host (wsproto decodes it as "
        "IDNA)", (b"GET /ws HTTP/1.1\r\nHost: \xaf\r\n" + _UPGRADE + b"\r\n",)),
    "surrogate ping": Case(
        WS_FRAMES, "ping envelope whose data is a lone surrogate (echoed in the pong, which "
        "cannot be encoded as UTF-8)",
        (ws_frame(b'{"type":"ping","data":"\\ud800"}', mask=b"\x01\x02\x03\x04"),),
        setup="ws"),
    "surrogate emit": _emit_case("emit of a lone surrogate to the bystander's tenant",
                                 b'{"event":"x","tenant":"fuzz","data":"\\ud800"}'),
    "surrogate event name": Case(
        EIO_WS, "Socket.IO event named with a lone surrogate (its error cannot be encoded)",
        (ws_frame(b'421["\\ud800",1]', mask=b"\x01\x02\x03\x04"),), setup="eio-ws+connect"),
    "unhashable agent status": Case(
        PLUGIN_EVENTS, "ConectCRM's atendente:status with a list for its status",
        (ws_frame(b'42/atendimento,1["atendente:status",{"status":[]}]',
                  mask=b"\x01\x02\x03\x04"),), setup="eio-ws+profiles"),
    "query-only target": Case(HEAD, "a target that is only a query (no path)",
                              (b"GET ?x HTTP/1.1\r\nHost: x\r\n\r\n",)),
    "h2 preface": Case(HEAD, "HTTP/2 connection preface", (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",)),
    "h2c upgrade": Case(HEAD, "h2c upgrade request",
                        (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, "
                         b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__"
                         b"\r\n\r\n",)),
}
