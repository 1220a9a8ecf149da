#!/usr/bin/python3
"""A minimal StatusNotifierWatcher (org.kde.StatusNotifierWatcher) and host for tests.

Debian ships no stand-alone watcher that reports a host, so tray items would think nobody shows
them. This one owns the watcher name on the session bus, says a host is registered, records
every item that registers (printing "REGISTERED <service><path>" on stdout) and forgets items
whose owner leaves the bus ("UNREGISTERED ...").
"""
import sys

from gi.repository import Gio, GLib

XML = """<node><interface name="org.kde.StatusNotifierWatcher">
<method name="RegisterStatusNotifierItem"><arg type="s" direction="in" name="service"/></method>
<method name="RegisterStatusNotifierHost"><arg type="s" direction="in" name="service"/></method>
<property name="RegisteredStatusNotifierItems" type="as" access="read"/>
<property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
<property name="ProtocolVersion" type="i" access="read"/>
<signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
<signal name="StatusNotifierItemUnregistered"><arg type="s"/></signal>
<signal name="StatusNotifierHostRegistered"/>
</interface></node>"""
IFACE = "org.kde.StatusNotifierWatcher"
PATH = "/StatusNotifierWatcher"
items = {}  # full item id -> owner's unique bus name


def emit(conn, name, value):
    conn.emit_signal(None, PATH, IFACE, name, GLib.Variant("(s)", (value,)))


def on_call(conn, sender, path, iface, method, params, invocation):
    if method == "RegisterStatusNotifierItem":
        service = params.unpack()[0]
        full = sender + service if service.startswith("/") else service + "/StatusNotifierItem"
        items[full] = sender
        print("REGISTERED", full, flush=True)
        emit(conn, "StatusNotifierItemRegistered", full)
        invocation.return_value(None)
    elif method == "RegisterStatusNotifierHost":
        invocation.return_value(None)
    else:
        invocation.return_dbus_error("org.freedesktop.DBus.Error.UnknownMethod", method)


def on_get(conn, sender, path, iface, prop):
    if prop == "RegisteredStatusNotifierItems":
        return GLib.Variant("as", list(items))
    if prop == "IsStatusNotifierHostRegistered":
        return GLib.Variant("b", True)
    if prop == "ProtocolVersion":
        return GLib.Variant("i", 0)
    return None


def on_name_owner_changed(conn, sender, path, iface, signal, params):
    name, old, new = params.unpack()
    if new:
        return
    for full, owner in list(items.items()):
        if owner == name or full.startswith(name + "/"):
            del items[full]
            print("UNREGISTERED", full, flush=True)
            emit(conn, "StatusNotifierItemUnregistered", full)


def main():
    loop = GLib.MainLoop()
    conn = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    node = Gio.DBusNodeInfo.new_for_xml(XML)
    conn.register_object(PATH, node.interfaces[0], on_call, on_get, None)
    conn.signal_subscribe("org.freedesktop.DBus", "org.freedesktop.DBus", "NameOwnerChanged",
                          "/org/freedesktop/DBus", None, Gio.DBusSignalFlags.NONE, on_name_owner_changed)

    def acquired(*_):
        print("WATCHER READY", flush=True)

    def lost(*_):
        print("WATCHER NAME LOST", flush=True)
        loop.quit()

    Gio.bus_own_name_on_connection(conn, IFACE, Gio.BusNameOwnerFlags.NONE, acquired, lost)
    loop.run()


if __name__ == "__main__":
    sys.exit(main())
