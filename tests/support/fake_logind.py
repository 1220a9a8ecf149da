#!/usr/bin/python3
"""A stand-in for systemd-logind on a private D-Bus bus (logind itself needs systemd as PID 1).

Owns org.freedesktop.login1 on the bus given as argv[1] and, for each line read on stdin,
emits org.freedesktop.login1.Manager.PrepareForSleep on /org/freedesktop/login1, exactly as
logind does around a suspend: "sleep" -> PrepareForSleep(true), "resume" -> (false).
"""
import sys

from gi.repository import Gio, GLib

bus = Gio.DBusConnection.new_for_address_sync(
    sys.argv[1],
    Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
    | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
    None,
    None,
)
bus.call_sync(
    "org.freedesktop.DBus",
    "/org/freedesktop/DBus",
    "org.freedesktop.DBus",
    "RequestName",
    GLib.Variant("(su)", ("org.freedesktop.login1", 4)),
    None,
    Gio.DBusCallFlags.NONE,
    -1,
    None,
)
print("LOGIND READY", flush=True)
for line in sys.stdin:
    what = line.strip()
    bus.emit_signal(
        None,
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
        "PrepareForSleep",
        GLib.Variant("(b)", (what == "sleep",)),
    )
    bus.flush_sync(None)
    print("EMITTED", what, flush=True)
