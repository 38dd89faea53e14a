"""Which library a loaded ELF object's imported function really calls (Linux only).

libmlx imports `cblas_sgemm` through its global offset table (GOT). After the first call the
dynamic linker has written the resolved address into that GOT slot; reading the slot and asking
dladdr() which object holds the address tells which BLAS MLX uses -- a measurement of the running
process, not a guess from file names or import order.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

_SHT_RELA = 4


class _DlPhdrInfo(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_size_t), ("name", ctypes.c_char_p)]  # leading fields only


class _DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]


_libc = ctypes.CDLL(None)
_PHDR_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_DlPhdrInfo), ctypes.c_size_t,
                                  ctypes.c_void_p)


def loaded_objects() -> dict[str, int]:
    """Path -> load bias of every shared object mapped into this process."""
    found: dict[str, int] = {}

    def visit(info, _size, _data):
        name = info.contents.name
        if name:
            found[os.fsdecode(name)] = info.contents.addr
        return 0

    _libc.dl_iterate_phdr(_PHDR_CALLBACK(visit), None)
    return found


def relocations(elf_path: str) -> dict[str, int]:
    """Symbol name -> address (relative to the load bias) of the slot the dynamic linker fills
    with that symbol's address, from the RELA sections (.rela.plt, .rela.dyn)."""
    slots: dict[str, int] = {}
    with open(elf_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
            return slots  # only 64-bit little-endian ELF (every platform mlx ships for Linux)
        shoff, = struct.unpack_from("<Q", m, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", m, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize)
                    for i in range(shnum)]
        for _name, kind, _flags, _addr, offset, size, link, _info, _align, _entsize in sections:
            if kind != _SHT_RELA:
                continue
            symtab_offset = sections[link][4]
            strtab_offset = sections[sections[link][6]][4]
            for entry in range(offset, offset + size, 24):
                r_offset, r_info = struct.unpack_from("<QQ", m, entry)
                sym_index = r_info >> 32
                if sym_index == 0:
                    continue  # relative relocation: no symbol
                name_offset, = struct.unpack_from("<I", m, symtab_offset + sym_index * 24)
                start = strtab_offset + name_offset
                name = m[start:m.find(b"\0", start)].decode()
                slots.setdefault(name, r_offset)
    return slots


def _find_loaded(object_suffix: str) -> tuple[str, int] | None:
    matches = [(p, bias) for p, bias in loaded_objects().items() if p.endswith(object_suffix)]
    return matches[0] if len(matches) == 1 else None


def _owner(address: int) -> tuple[str, str | None] | None:
    info = _DlInfo()
    if not address or not _libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)):
        return None
    return (os.path.realpath(os.fsdecode(info.fname)),
            info.sname.decode() if info.sname else None)


def bound_libraries(object_suffix: str, symbols: list[str] | None = None) -> dict[str, str]:
    """For the loaded object whose path ends with `object_suffix`: imported symbol -> real path
    of the library its slot points into now (symbols whose slot does not hold a code or data
    address, e.g. thread-local offsets, are left out). `symbols` limits the lookup."""
    found = _find_loaded(object_suffix)
    if found is None:
        return {}
    path, bias = found
    bound = {}
    for name, slot in relocations(path).items():
        if symbols is not None and name not in symbols:
            continue
        owner = _owner(ctypes.c_void_p.from_address(bias + slot).value)
        if owner is not None:
            bound[name] = owner[0]
    return bound


def resolved_target(object_suffix: str, symbol: str) -> dict | None:
    """Where the loaded object whose path ends with `object_suffix` sends calls to `symbol`:
    {"library": real path of the object holding the code, "symbol": its name there,
    "bound": False while lazy binding has not happened yet}. None when it cannot be read."""
    found = _find_loaded(object_suffix)
    if found is None:
        return None
    path, bias = found
    slot = relocations(path).get(symbol)
    owner = None if slot is None else _owner(ctypes.c_void_p.from_address(bias + slot).value)
    if owner is None:
        return None
    # Before the first call (lazy binding) the slot points back into the caller's own PLT.
    return {"library": owner[0], "symbol": owner[1], "bound": owner[0] != os.path.realpath(path)}
