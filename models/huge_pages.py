"""Transparent huge pages for the embedding tables, through glibc's malloc.

Lookups and sparse updates touch rows spread over gigabytes of tables. With
4 KiB pages almost every row read costs a TLB miss and a page walk; with
2 MiB transparent huge pages (THP) far fewer. TensorFlow's CPU allocator takes
its large buffers from glibc's malloc, and glibc 2.35 and later can ask the
kernel for THP on malloc's mappings (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``:
``madvise(MADV_HUGEPAGE)`` on each). Without it, a kernel whose THP mode is
``madvise`` (the common default) never backs the tables with huge pages, and
one in mode ``always`` does so only where a mapping happens to cover aligned
2 MiB blocks, which varies from process to process.

glibc reads its tunables once, when a process starts, so `restart_with_huge_pages`
re-executes the program (same PID, same arguments) with the tunable added;
``dlrm_main.py`` calls it first thing. ``DLRM_HUGE_PAGES=0`` turns it off.
This module imports nothing heavy: it runs before TensorFlow loads.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "DLRM_HUGE_PAGES"
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"
_MIN_GLIBC = (2, 35)


def thp_mode(text: str | None) -> str | None:
    """The selected mode (``always``, ``madvise``, ``never``) of the kernel's THP file."""
    if text is None:
        return None
    match = re.search(r"\[(\w+)\]", text)
    return match.group(1) if match else None


def glibc_version() -> tuple[int, int] | None:
    """This process's glibc version, or None under another C library."""
    try:
        name = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    match = re.fullmatch(r"glibc (\d+)\.(\d+).*", name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def huge_pages_tunables(
    env: Mapping[str, str], mode: str | None, glibc: tuple[int, int] | None
) -> str | None:
    """The ``GLIBC_TUNABLES`` value to restart with, or None to keep the process as it is.

    None when: turned off (``DLRM_HUGE_PAGES=0``), the tunable is already set
    (by the user, or by the restart itself), the kernel has no THP or mode
    ``never``, or the C library is not glibc >= 2.35.
    """
    if env.get(OPT_OUT, "1") == "0":
        return None
    current = env.get("GLIBC_TUNABLES", "")
    if TUNABLE in current:
        return None
    if mode not in ("always", "madvise") or glibc is None or glibc < _MIN_GLIBC:
        return None
    return f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"


def _kernel_thp_mode() -> str | None:
    try:
        with open(THP_MODE_FILE, encoding="ascii") as f:
            return thp_mode(f.read())
    except OSError:
        return None


def huge_pages_state() -> str:
    """One line for logs and benchmark reports: THP mode and whether malloc uses it."""
    mode = _kernel_thp_mode()
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    malloc = "on" if f"{TUNABLE}=1" in tunables else "off"
    return f"transparent huge pages {mode or 'unavailable'}, malloc huge pages {malloc}"


def restart_with_huge_pages() -> None:
    """Re-executes this Python program with the tunable, when `huge_pages_tunables` says so.

    Returns only when no restart is needed; otherwise the process image is
    replaced (``os.execve``: same PID, so launchers such as horovodrun keep
    tracking it) by the same command line (``sys.orig_argv``: interpreter
    options, script or ``-m`` module, arguments), which starts again from
    the top and this time returns here.
    """
    tunables = huge_pages_tunables(os.environ, _kernel_thp_mode(), glibc_version())
    if tunables is None or not sys.executable:  # embedded interpreters have no executable
        return
    sys.stdout.flush()
    sys.stderr.flush()
    env = {**os.environ, "GLIBC_TUNABLES": tunables}
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as error:  # e.g. a sandbox refusing exec: run on without huge pages
        print(f"huge pages: could not restart ({error}); running without", file=sys.stderr)
