"""A real X display for tests: Xvfb, a keyboard typing into it, and its picture.

:class:`VirtualDisplay` starts ``Xvfb`` with ``-displayfd``: Xvfb picks a free
display number itself and writes it to a pipe once it accepts connections, so
nothing guesses a number or sleeps while it starts. :class:`XKeyboard` types
through the XTEST extension (libXtst, through ctypes), so the program under test
receives key events from the X server exactly as from a keyboard, in whichever
window has the input focus; it also reads which window that is.
:func:`screenshot` saves the whole screen from a separate tiny Qt program.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: The X protocol's "no window" and "focus follows the pointer" focus values.
_NONE, _POINTER_ROOT = 0, 1
#: X keysyms of the keys the tests press (X11/keysymdef.h).
KEYSYMS = {"Return": 0xFF0D, "Escape": 0xFF1B, "Control_L": 0xFFE3, "space": 0x0020}


def xvfb_path() -> str | None:
    """Where the ``Xvfb`` program is (Debian's ``xvfb`` package), or None."""
    return shutil.which("Xvfb")


class VirtualDisplay:
    """``Xvfb`` on a display number it chooses, for one test.

    Args:
        log: where Xvfb's own output goes.
        size: the screen, ``WIDTHxHEIGHTxDEPTH``.

    Attributes:
        number: the display number once started (``DISPLAY=:number``).
    """

    def __init__(self, log: Path, size: str = "1280x800x24") -> None:
        self.log = log
        self.size = size
        self.number = -1
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        """The value for ``DISPLAY``."""
        return f":{self.number}"

    def start(self, timeout: float = 30.0) -> VirtualDisplay:
        """Start Xvfb and wait until it accepts connections (its ``-displayfd``
        report), failing with its output if it exits or says nothing in time."""
        binary = xvfb_path()
        if binary is None:
            raise RuntimeError("Xvfb is not installed (Debian: apt-get install xvfb)")
        read_end, write_end = os.pipe()
        try:
            with self.log.open("wb") as out:
                self.process = subprocess.Popen(
                    [binary, "-displayfd", str(write_end), "-screen", "0", self.size,
                     "-nolisten", "tcp"],
                    pass_fds=(write_end,), stdout=out, stderr=subprocess.STDOUT)
            os.close(write_end)
            write_end = -1
            report = b""
            deadline = time.monotonic() + timeout
            while not report.endswith(b"\n"):
                left = deadline - time.monotonic()
                ready, _w, _x = select.select([read_end], [], [], max(0.0, left))
                if not ready:
                    raise RuntimeError(f"Xvfb did not report a display:\n{self.text()}")
                chunk = os.read(read_end, 64)
                if not chunk:  # it exited without reporting one
                    self.process.wait(10)
                    raise RuntimeError(f"Xvfb exited ({self.process.returncode}):\n"
                                       f"{self.text()}")
                report += chunk
            self.number = int(report.strip())
            return self
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)

    def text(self) -> str:
        """What Xvfb printed."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Terminate Xvfb and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        self.process = None


class _TextProperty(ctypes.Structure):
    _fields_ = [("value", ctypes.c_void_p), ("encoding", ctypes.c_ulong),
                ("format", ctypes.c_int), ("nitems", ctypes.c_ulong)]


#: int handler(Display *, XErrorEvent *): Xlib's error handler type.
_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _ignore(_display: int | None, _event: int | None) -> int:
    """Xlib's default handler prints and calls exit(), which would end the test
    process without cleaning up (a window can vanish between asking which one
    has the focus and reading its title): the call then just fails."""
    return 0


_ignore_x_error = _ERROR_HANDLER(_ignore)


def _library(name: str) -> ctypes.CDLL:
    path = ctypes.util.find_library(name)
    if path is None:
        raise RuntimeError(f"lib{name} is not installed (Debian: lib{name.lower()}6)")
    return ctypes.CDLL(path)


class XKeyboard:
    """Key presses sent through the X server's XTEST extension, and the window
    that receives them (the X input focus).

    Args:
        display: the display's name, e.g. ``:5``.
    """

    def __init__(self, display: str) -> None:
        self.x11 = _library("X11")
        self.xtst = _library("Xtst")
        self.x11.XOpenDisplay.restype = ctypes.c_void_p
        self.x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        self.x11.XKeysymToKeycode.restype = ctypes.c_ubyte
        self.x11.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self.x11.XGetInputFocus.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong),
                                            ctypes.POINTER(ctypes.c_int)]
        self.x11.XGetWMName.argtypes = [ctypes.c_void_p, ctypes.c_ulong,
                                        ctypes.POINTER(_TextProperty)]
        self.x11.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong,
                                        ctypes.POINTER(ctypes.c_ulong),
                                        ctypes.POINTER(ctypes.c_ulong),
                                        ctypes.POINTER(ctypes.c_void_p),
                                        ctypes.POINTER(ctypes.c_uint)]
        self.x11.XFree.argtypes = [ctypes.c_void_p]
        self.x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self.xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                                                ctypes.c_ulong]
        self.xtst.XTestQueryExtension.argtypes = [ctypes.c_void_p] + [
            ctypes.POINTER(ctypes.c_int)] * 4
        self.x11.XSetErrorHandler.argtypes = [_ERROR_HANDLER]
        self.x11.XSetErrorHandler.restype = ctypes.c_void_p
        self.x11.XSetErrorHandler(_ignore_x_error)
        self.display = self.x11.XOpenDisplay(display.encode())
        if not self.display:
            raise RuntimeError(f"cannot open X display {display}")
        numbers = [ctypes.c_int() for _ in range(4)]
        if not self.xtst.XTestQueryExtension(self.display, *map(ctypes.byref, numbers)):
            raise RuntimeError(f"the X server on {display} has no XTEST extension")

    def close(self) -> None:
        """Close the connection to the X server."""
        if self.display:
            self.x11.XCloseDisplay(self.display)
            self.display = None

    def _keycode(self, keysym: int) -> int:
        code = int(self.x11.XKeysymToKeycode(self.display, keysym))
        if code == 0:
            raise ValueError(f"no key on this keyboard makes keysym {keysym:#x}")
        return code

    def _key(self, keysym: int, press: bool) -> None:
        self.xtst.XTestFakeKeyEvent(self.display, self._keycode(keysym), int(press), 0)

    def press(self, key: str, *modifiers: str) -> None:
        """Press and release ``key`` (a name of :data:`KEYSYMS` or one character)
        while holding ``modifiers`` (names of :data:`KEYSYMS`)."""
        keysym = KEYSYMS[key] if key in KEYSYMS else _char_keysym(key)
        for modifier in modifiers:
            self._key(KEYSYMS[modifier], True)
        self._key(keysym, True)
        self._key(keysym, False)
        for modifier in reversed(modifiers):
            self._key(KEYSYMS[modifier], False)
        self.x11.XSync(self.display, 0)

    def type(self, text: str) -> None:
        """Type ``text``: lowercase ASCII letters, digits and spaces (keys that
        need no Shift on the server's default US keymap)."""
        for char in text:
            self.press("space" if char == " " else char)

    def focus_name(self) -> str:
        """The title of the top-level window with the input focus ("" if none)."""
        focus, revert = ctypes.c_ulong(), ctypes.c_int()
        self.x11.XGetInputFocus(self.display, ctypes.byref(focus), ctypes.byref(revert))
        window = focus.value
        while window not in (_NONE, _POINTER_ROOT):
            prop = _TextProperty()
            if self.x11.XGetWMName(self.display, window, ctypes.byref(prop)) and prop.value:
                name = ctypes.string_at(prop.value, prop.nitems).decode("utf-8", "replace")
                self.x11.XFree(prop.value)
                return name
            root, parent = ctypes.c_ulong(), ctypes.c_ulong()
            children, count = ctypes.c_void_p(), ctypes.c_uint()
            if not self.x11.XQueryTree(self.display, window, ctypes.byref(root),
                                       ctypes.byref(parent), ctypes.byref(children),
                                       ctypes.byref(count)):
                return ""
            if children.value:
                self.x11.XFree(children)
            if parent.value in (root.value, _NONE):
                return ""
            window = parent.value
        return ""


def _char_keysym(char: str) -> int:
    if len(char) != 1 or not (char.isdigit() or "a" <= char <= "z"):
        raise ValueError(f"cannot type {char!r} without Shift")
    return ord(char)  # Latin-1 keysyms are the character codes


_GRAB = """
import sys
from PyQt6.QtGui import QGuiApplication
app = QGuiApplication(sys.argv[:1])
screen = QGuiApplication.primaryScreen()
if screen is None or not screen.grabWindow(0).save(sys.argv[1], "PNG"):
    sys.exit("could not grab the screen")
"""


def screenshot(display: str, path: Path) -> None:
    """Save the whole screen of ``display`` as a PNG at ``path`` (a separate Qt
    program on the xcb platform grabs the root window)."""
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    done = subprocess.run([sys.executable, "-c", _GRAB, str(path)], env=env,
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"screenshot failed ({done.returncode}):\n{done.stderr}")
