"""HTTP/2 abuse against hookrouter, for tests/it/http_attacks.rs.

Usage: attacks.py HOST PORT (--tls CA_PEM SERVER_NAME | --plain) CASE [ARG]

Well-formed requests go through the `h2` library's client state machine; malformed and abusive
traffic is written frame by frame with `hyperframe` (and `hpack` for header blocks), since `h2`
refuses to send it. Prints one JSON object describing what the server did:

  {"case": ..., "streams": {"1": {"status": 200, "reset": null, "body": "..."}},
   "goaway": {"code": 11, "last_stream_id": 1} | null, "closed": true, "sent": N,
   "elapsed": seconds, "error": null | "..."}

`reset` is the RST_STREAM error code the server sent for the stream, `goaway` the GOAWAY it
sent, `closed` whether it closed the connection, `sent` how many abusive units (streams,
frames) were written before the server stopped reading or closed.
"""

import hashlib
import hmac
import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CANCEL = 0x8

# Shared with tests/it/http_attacks.rs.
SIGNING_SECRET = b"h2-attack-signing-secret"


class Conn:
    """A raw HTTP/2 client connection: frames out, frames in, a record of what came back."""

    def __init__(self, host, port, tls):
        sock = socket.create_connection((host, port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            ca, name = tls
            ctx = ssl.create_default_context(cafile=ca)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=name)
            if sock.selected_alpn_protocol() != "h2":
                raise RuntimeError(f"ALPN gave {sock.selected_alpn_protocol()!r}, not h2")
        self.sock = sock
        self.buf = b""
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        # The server's header list limit is far below anything we send on purpose: decode
        # whatever it sends.
        self.decoder.max_header_list_size = 1 << 24
        self.streams = {}
        self.goaway = None
        self.closed = False
        self.server_settings = {}
        self.settings_acked = False
        self.partial_headers = None

    # --- sending ---

    def send_raw(self, data):
        """Writes bytes; False once the server has closed or reset the connection."""
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.closed = True
            return False

    def send(self, *frames):
        return self.send_raw(b"".join(f.serialize() for f in frames))

    def handshake(self):
        """Preface and empty SETTINGS; waits for the server's SETTINGS and ACKs them, so that
        the server's advertised limits are in force before anything else is sent."""
        self.send_raw(PREFACE + SettingsFrame(0).serialize())
        deadline = time.monotonic() + 5
        while not self.server_settings and time.monotonic() < deadline and not self.closed:
            self.read(0.2)
        if not self.server_settings:
            raise RuntimeError("no SETTINGS from the server")
        # Make the server's own settings effective (it applies them on our ACK) and wait for
        # the ACK of ours.
        deadline = time.monotonic() + 5
        while not self.settings_acked and time.monotonic() < deadline and not self.closed:
            self.read(0.2)

    def block(self, headers):
        """An HPACK header block for `headers` (list of (name, value) bytes, sent as given)."""
        # No Huffman coding: the blocks are large on purpose and pure-Python Huffman is slow.
        return self.encoder.encode(headers, huffman=False)

    def headers(self, stream_id, headers, end_stream=False):
        f = HeadersFrame(stream_id)
        f.data = self.block(headers)
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    def data(self, stream_id, payload, end_stream=False):
        f = DataFrame(stream_id)
        f.data = payload
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    # --- receiving ---

    def stream(self, sid):
        return self.streams.setdefault(
            str(sid), {"status": None, "reset": None, "body": "", "headers": {}}
        )

    def read(self, timeout):
        """Reads and handles frames for up to `timeout` seconds (less if the server closes)."""
        end = time.monotonic() + timeout
        while not self.closed:
            left = end - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except ssl.SSLWantReadError:
                continue
            except (ConnectionResetError, ssl.SSLError, OSError):
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            self.buf += chunk
            self._parse()

    def read_until(self, timeout, done):
        end = time.monotonic() + timeout
        while not self.closed and not done() and time.monotonic() < end:
            self.read(min(0.1, max(0.0, end - time.monotonic())))

    def _parse(self):
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            self.buf = self.buf[9 + length :]
            self._handle(frame)

    def _handle(self, frame):
        if isinstance(frame, SettingsFrame):
            if "ACK" in frame.flags:
                self.settings_acked = True
            else:
                self.server_settings.update(frame.settings)
                self.send(SettingsFrame(0, flags=["ACK"]))
        elif isinstance(frame, PingFrame):
            if "ACK" not in frame.flags:
                self.send(PingFrame(0, data=frame.opaque_data, flags=["ACK"]))
        elif isinstance(frame, GoAwayFrame):
            self.goaway = {
                "code": frame.error_code,
                "last_stream_id": frame.last_stream_id,
                "debug": frame.additional_data.decode("latin-1"),
            }
        elif isinstance(frame, RstStreamFrame):
            self.stream(frame.stream_id)["reset"] = frame.error_code
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            if isinstance(frame, HeadersFrame):
                self.partial_headers = (frame.stream_id, bytes(frame.data))
            else:
                sid, block = self.partial_headers
                self.partial_headers = (sid, block + bytes(frame.data))
            if "END_HEADERS" in frame.flags:
                sid, block = self.partial_headers
                self.partial_headers = None
                fields = self.decoder.decode(block, raw=True)
                s = self.stream(sid)
                for name, value in fields:
                    if name == b":status":
                        s["status"] = int(value)
                    else:
                        s["headers"][name.decode("latin-1")] = value.decode("latin-1")
        elif isinstance(frame, DataFrame):
            s = self.stream(frame.stream_id)
            s["body"] += bytes(frame.data).decode("latin-1")
            # Keep the windows open so long answers are never stuck on flow control.
            n = frame.flow_controlled_length
            if n:
                self.send(WindowUpdateFrame(0, window_increment=n))
                if "END_STREAM" not in frame.flags:
                    self.send(WindowUpdateFrame(frame.stream_id, window_increment=n))

    def answered(self, sid):
        s = self.streams.get(str(sid))
        return s is not None and (s["reset"] is not None or s["status"] is not None)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def request_headers(path, authority, extra=(), method=b"POST"):
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", authority),
        (b":path", path),
    ] + list(extra)


# === Well-formed requests through the h2 library ===


def h2_requests(host, port, tls, requests, timeout=10):
    """Sends `requests` ([(path, headers, body)]) on one connection with the h2 library's
    client and returns {stream id: {status, body, reset}}."""
    conn = Conn(host, port, tls)
    h2c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    h2c.initiate_connection()
    conn.send_raw(h2c.data_to_send())
    out = {}
    pending = set()
    authority = (tls[1] if tls else host).encode()
    for path, headers, body in requests:
        sid = h2c.get_next_available_stream_id()
        hs = request_headers(path, authority, headers)
        if body is not None and not any(k == b"content-length" for k, _ in headers):
            hs.append((b"content-length", str(len(body)).encode()))
        h2c.send_headers(sid, hs, end_stream=not body)
        if body:
            h2c.send_data(sid, body, end_stream=True)
        out[str(sid)] = {"status": None, "reset": None, "body": ""}
        pending.add(sid)
    conn.send_raw(h2c.data_to_send())
    end = time.monotonic() + timeout
    while pending and time.monotonic() < end:
        conn.sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data = conn.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            break
        if not data:
            conn.closed = True
            break
        for ev in h2c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                for k, v in ev.headers:
                    if k == b":status":
                        out[str(ev.stream_id)]["status"] = int(v)
            elif isinstance(ev, h2.events.DataReceived):
                out[str(ev.stream_id)]["body"] += ev.data.decode("latin-1")
                h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                pending.discard(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                out[str(ev.stream_id)]["reset"] = int(ev.error_code)
                pending.discard(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                conn.goaway = {"code": int(ev.error_code), "last_stream_id": ev.last_stream_id}
                pending.clear()
        conn.send_raw(h2c.data_to_send())
    conn.streams = out
    return conn


def case_valid(host, port, tls, arg):
    """A normal POST per path in `arg` (comma-separated), on one connection."""
    paths = (arg or "/hooks/sync").split(",")
    body = b'{"type":"h2.valid"}'
    reqs = [(p.encode(), [(b"content-type", b"application/json")], body) for p in paths]
    return h2_requests(host, port, tls, reqs)


def github_signature(body):
    return b"sha256=" + hmac.new(SIGNING_SECRET, body, hashlib.sha256).hexdigest().encode()


def case_signed(host, port, tls, arg):
    """The signed route: `ok` sends the signed body, `tampered` a body changed after signing."""
    body = b'{"action":"opened","amount":100}'
    sig = github_signature(body)
    if arg == "tampered":
        body = b'{"action":"opened","amount":999}'
    headers = [
        (b"content-type", b"application/json"),
        (b"x-github-event", b"push"),
        (b"x-github-delivery", b"h2-delivery-1"),
        (b"x-hub-signature-256", sig),
    ]
    return h2_requests(host, port, tls, [(b"/hooks/signed", headers, body)])


def case_body_too_large(host, port, tls, arg):
    """A body over the route's max_body (1 KiB): `declared` with content-length, `streamed`
    without it, in DATA frames."""
    conn = Conn(host, port, tls)
    conn.handshake()
    authority = tls[1].encode() if tls else host.encode()
    body = b"x" * 4096
    extra = [(b"content-length", b"4096")] if arg == "declared" else []
    conn.send(conn.headers(1, request_headers(b"/hooks/" + PATH_KIND, authority, extra)))
    if arg == "declared":
        # Nothing of the body yet: the answer must come from the declared length alone.
        conn.read_until(5, lambda: conn.answered(1))
        conn.stream(1)["answered_before_body"] = conn.answered(1)
    conn.send(
        conn.data(1, body[:1024]),
        conn.data(1, body[1024:2048]),
        conn.data(1, body[2048:], end_stream=True),
    )
    conn.read_until(5, lambda: conn.stream(1)["status"] is not None and conn.stream(1)["body"])
    return conn


# === Abuse, frame by frame ===


def case_rapid_reset(host, port, tls, arg):
    """HEADERS then RST_STREAM(CANCEL) for `arg` streams, written in batches without waiting."""
    n = int(arg or 10000)
    conn = Conn(host, port, tls)
    conn.handshake()
    authority = tls[1].encode() if tls else host.encode()
    sent = 0
    sid = 1
    batch = 100
    while sent < n and not conn.closed:
        frames = []
        for _ in range(min(batch, n - sent)):
            hs = request_headers(
                b"/hooks/" + PATH_KIND,
                authority,
                [(b"content-type", b"application/json"), (b"content-length", b"2")],
            )
            frames.append(conn.headers(sid, hs))
            frames.append(RstStreamFrame(sid, error_code=CANCEL))
            sid += 2
        if not conn.send(*frames):
            break
        sent += len(frames) // 2
        # Drain whatever the server says, without blocking the flood.
        conn.read(0.0005)
        if conn.goaway is not None:
            break
    conn.sent = sent
    conn.read_until(5, lambda: conn.closed)
    return conn


def case_continuation_flood(host, port, tls, arg):
    """HEADERS without END_HEADERS, then CONTINUATION frames of 16 KiB of header data each,
    for up to `arg` MiB, never ending the header block."""
    total = int(arg or 64) << 20
    conn = Conn(host, port, tls)
    conn.handshake()
    authority = tls[1].encode() if tls else host.encode()
    first = HeadersFrame(1)
    first.data = conn.block(request_headers(b"/hooks/" + PATH_KIND, authority))
    conn.send(first)
    # Each CONTINUATION carries one complete literal header (never indexed), 16 KiB: the
    # decoded list grows by the same amount per frame.
    value = b"v" * (16384 - 64)
    block = hpack.Encoder().encode([(b"x-flood", value)], huffman=False)
    frame_bytes = ContinuationFrame(1, data=block).serialize()
    sent = 0
    written = 0
    # One frame per write, reading in between: the server's GOAWAY is seen before a reset
    # of the connection (for data it never read) could discard it.
    while written < total and not conn.closed:
        if not conn.send_raw(frame_bytes):
            break
        sent += 1
        written += len(frame_bytes)
        conn.read(0.0005)
        if conn.goaway is not None:
            break
    conn.sent = sent
    conn.read_until(5, lambda: conn.closed)
    return conn


def case_too_many_streams(host, port, tls, arg):
    """Opens `arg` streams (POST, body never sent) at once, more than the server's
    SETTINGS_MAX_CONCURRENT_STREAMS; reports which the server refused."""
    n = int(arg or 200)
    conn = Conn(host, port, tls)
    conn.handshake()
    authority = tls[1].encode() if tls else host.encode()
    frames = []
    for i in range(n):
        hs = request_headers(
            b"/hooks/" + PATH_KIND,
            authority,
            [(b"content-type", b"application/json"), (b"content-length", b"2")],
        )
        frames.append(conn.headers(1 + 2 * i, hs))
    conn.send(*frames)
    conn.sent = n
    last = 2 * n - 1
    conn.read_until(5, lambda: conn.answered(last) or conn.goaway is not None)
    conn.read(0.5)
    conn.max_concurrent = conn.server_settings.get(SettingsFrame.MAX_CONCURRENT_STREAMS)
    return conn


def case_big_header_list(host, port, tls, arg):
    """A header list over the server's SETTINGS_MAX_HEADER_LIST_SIZE, as one large header
    (`one`) or many small ones (`many`), split over CONTINUATION frames."""
    conn = Conn(host, port, tls)
    conn.handshake()
    limit = conn.server_settings.get(SettingsFrame.MAX_HEADER_LIST_SIZE)
    authority = tls[1].encode() if tls else host.encode()
    target = (limit or 65536) + 4096
    if arg == "many":
        extra = [(b"x-h%d" % i, b"v" * 64) for i in range(target // 100 + 1)]
    else:
        extra = [(b"x-big", b"v" * target)]
    hs = request_headers(b"/hooks/" + PATH_KIND, authority, extra)
    block = conn.block(hs)
    chunks = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    frames = []
    first = HeadersFrame(1)
    first.data = chunks[0]
    first.flags.add("END_STREAM")
    frames.append(first)
    for c in chunks[1:]:
        frames.append(ContinuationFrame(1, data=c))
    frames[-1].flags.add("END_HEADERS")
    conn.send(*frames)
    conn.read_until(5, lambda: conn.answered(1) or conn.goaway is not None)
    conn.read(0.3)
    conn.limit = limit
    return conn


def case_data_after_end_stream(host, port, tls, arg):
    """A complete request (HEADERS with END_STREAM, empty body), then a DATA frame on the
    same stream: the stream is half-closed (remote), so the DATA is a STREAM_CLOSED error."""
    conn = Conn(host, port, tls)
    conn.handshake()
    authority = tls[1].encode() if tls else host.encode()
    hs = request_headers(b"/hooks/" + PATH_KIND, authority, [(b"x-case", b"data-after-end")])
    conn.send(
        conn.headers(1, hs, end_stream=True),
        conn.data(1, b'{"smuggled":true}', end_stream=True),
    )
    conn.read_until(5, lambda: conn.stream(1)["reset"] is not None or conn.goaway is not None)
    conn.read(0.3)
    return conn


def case_content_length_mismatch(host, port, tls, arg):
    """content-length disagreeing with the DATA sent: `short` (declares 10, sends 2) or
    `long` (declares 2, sends 10)."""
    conn = Conn(host, port, tls)
    conn.handshake()
    authority = tls[1].encode() if tls else host.encode()
    declared, body = (b"10", b"{}") if arg == "short" else (b"2", b'{"a":1234}')
    hs = request_headers(b"/hooks/" + PATH_KIND, authority, [(b"content-length", declared)])
    conn.send(conn.headers(1, hs), conn.data(1, body, end_stream=True))
    conn.read_until(5, lambda: conn.answered(1) or conn.goaway is not None)
    conn.read(0.3)
    return conn


def malformed_headers(kind, authority):
    path = b"/hooks/" + PATH_KIND
    base = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", authority)]
    ct = [(b"content-type", b"application/json")]
    return {
        "missing-path": base + ct,
        "empty-path": base + [(b":path", b"")] + ct,
        "missing-method": [(b":scheme", b"https"), (b":authority", authority), (b":path", path)]
        + ct,
        "duplicate-method": base + [(b":method", b"POST"), (b":path", path)] + ct,
        "duplicate-path": base + [(b":path", path), (b":path", b"/other")] + ct,
        "unknown-pseudo": base + [(b":path", path), (b":foo", b"bar")] + ct,
        "pseudo-after-regular": [(b":method", b"POST"), (b"content-type", b"application/json")]
        + [(b":scheme", b"https"), (b":authority", authority), (b":path", path)],
        "status-in-request": base + [(b":path", path), (b":status", b"200")] + ct,
        "uppercase-name": base + [(b":path", path), (b"X-Upper", b"a")] + ct,
        "connection": base + [(b":path", path), (b"connection", b"keep-alive")] + ct,
        "keep-alive": base + [(b":path", path), (b"keep-alive", b"timeout=5")] + ct,
        "proxy-connection": base + [(b":path", path), (b"proxy-connection", b"keep-alive")]
        + ct,
        "transfer-encoding": base + [(b":path", path), (b"transfer-encoding", b"chunked")]
        + ct,
        "upgrade": base + [(b":path", path), (b"upgrade", b"websocket")] + ct,
        "te-gzip": base + [(b":path", path), (b"te", b"gzip")] + ct,
        "nul-in-value": base + [(b":path", path), (b"x-a", b"a\x00b")] + ct,
        "crlf-in-value": base
        + [(b":path", path), (b"x-a", b"a\r\ncontent-length: 99")]
        + ct,
        "space-in-name": base + [(b":path", path), (b"x a", b"b")] + ct,
    }[kind]


def case_malformed(host, port, tls, arg):
    """One request whose header block is malformed per RFC 9113 section 8 (`arg` names how),
    with a complete body."""
    conn = Conn(host, port, tls)
    conn.handshake()
    authority = tls[1].encode() if tls else host.encode()
    hs = malformed_headers(arg, authority)
    conn.send(conn.headers(1, hs), conn.data(1, b'{"type":"malformed"}', end_stream=True))
    conn.read_until(5, lambda: conn.answered(1) or conn.goaway is not None)
    conn.read(0.2)
    return conn


PATH_KIND = b"sync"

CASES = {
    "valid": case_valid,
    "signed": case_signed,
    "body-too-large": case_body_too_large,
    "rapid-reset": case_rapid_reset,
    "continuation-flood": case_continuation_flood,
    "too-many-streams": case_too_many_streams,
    "big-header-list": case_big_header_list,
    "data-after-end-stream": case_data_after_end_stream,
    "content-length-mismatch": case_content_length_mismatch,
    "malformed": case_malformed,
}


def main(argv):
    global PATH_KIND
    host, port = argv[1], int(argv[2])
    rest = argv[3:]
    if rest[0] == "--tls":
        tls = (rest[1], rest[2])
        rest = rest[3:]
    elif rest[0] == "--plain":
        tls = None
        rest = rest[1:]
    else:
        raise SystemExit(__doc__)
    if rest[0] == "--route":
        PATH_KIND = rest[1].encode()
        rest = rest[2:]
    case = rest[0]
    arg = rest[1] if len(rest) > 1 else None
    started = time.monotonic()
    result = {"case": case, "arg": arg, "error": None}
    conn = None
    try:
        conn = CASES[case](host, port, tls, arg)
    except Exception as e:  # reported, the Rust test decides
        result["error"] = f"{type(e).__name__}: {e}"
    if conn is not None:
        result.update(
            streams=conn.streams,
            goaway=conn.goaway,
            closed=conn.closed,
            sent=getattr(conn, "sent", None),
            server_settings={str(k): v for k, v in conn.server_settings.items()},
        )
        for extra in ("max_concurrent", "limit"):
            if hasattr(conn, extra):
                result[extra] = getattr(conn, extra)
        conn.close()
    result["elapsed"] = round(time.monotonic() - started, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
