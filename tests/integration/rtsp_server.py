"""A real RTSP server for the tests: GStreamer's gst-rtsp-server (Debian's gir1.2-gst-rtsp-server-1.0),
driven through PyGObject.

Run it with the system Python, which sees Debian's python3-gi (the project's virtual environment
does not): ``/usr/bin/python3 tests/integration/rtsp_server.py --port P --video CLIP [--user U
--password W]``. It serves ``rtsp://127.0.0.1:P/cam``: the clip decoded, scaled and encoded again
as H.264 at its own rate, from its start for every client, with RTSP basic authentication when a
user is given. It prints ``ready`` once it listens, and ``client connected`` for each client. Not
imported by the tests: they run it as a process, to kill it with SIGKILL and start it again.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # The clip decoded and encoded again at its own rate (the server paces it like a camera).
    launch = (
        f"( filesrc location={args.video} ! decodebin ! videoconvert ! videoscale ! "
        f"video/x-raw,width={args.width},height={args.height} ! "
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=12 bitrate=800 ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_launch(launch)
    factory.set_shared(False)  # every client (a reconnection too) gets the clip from its start
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    server.connect("client-connected", lambda *_: print("client connected", flush=True))
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
