# Included by forker/_worker.pyx (declarations in forker/_worker.pxd).
#
# The C core's configuration (docs/ARCHITECTURE.md, "Options: from the table
# to the C core"). fk_loop_config is declared once, in csrc/fk_loop.h (FK_LOOP_CONFIG_FIELDS),
# which also makes the table below of its fields: name, place, size and kind.
# loop_config() fills every field through that table, from the option of
# forker/config.py whose c_field names it, or from the Engine's own values;
# nothing here names a field but the Engine's values (docs/ARCHITECTURE.md).

cdef extern from *:
    """
    #include <stddef.h>
    #include "fk_loop.h"
    typedef struct {
        const char *name;
        size_t offset;
        size_t size;
        int kind;
    } fk_cfg_field;
    #define FK_CFG_ENTRY(type, name, kind) {#name, offsetof(fk_loop_config, name), sizeof(type), kind},
    static const fk_cfg_field fk_cfg_fields[] = {FK_LOOP_CONFIG_FIELDS(FK_CFG_ENTRY)};
    #undef FK_CFG_ENTRY
    #define FK_CFG_NFIELDS (sizeof(fk_cfg_fields) / sizeof(fk_cfg_fields[0]))
    """
    ctypedef struct fk_cfg_field:
        const char *name
        size_t offset
        size_t size
        int kind
    const fk_cfg_field fk_cfg_fields[]
    size_t FK_CFG_NFIELDS

cdef unsigned char CFG_UNSET = 0xA5  # what a field nothing filled holds (never a plausible value)


def loop_config_fields():
    """The fields of fk_loop_config in order, as (name, kind), kind one of
    "count", "u64", "ms", "int", "text", "len", "addr"."""
    kinds = {FK_CFG_COUNT: "count", FK_CFG_U64: "u64", FK_CFG_MS: "ms", FK_CFG_INT: "int",
             FK_CFG_TEXT: "text", FK_CFG_LEN: "len", FK_CFG_ADDR: "addr"}
    return [(fk_cfg_fields[i].name.decode("ascii"), kinds[fk_cfg_fields[i].kind])
            for i in range(FK_CFG_NFIELDS)]


cdef object cfg_integer(object value, const fk_cfg_field *f, str origin):
    """value as the integer the field holds, checked against its C type."""
    cdef str name = f.name.decode("ascii")
    if f.kind == FK_CFG_MS:
        # seconds to milliseconds, rounded up (0.0004 s is 1 ms, not 0: "none");
        # the rounding to 6 places keeps 1.1 s at 1100 ms, not 1101
        from math import ceil
        number = ceil(round(float(value) * 1000, 6))
    else:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{origin}: {value!r} is not an integer (fk_loop_config.{name})")
        number = int(value)
    bits = 8 * f.size
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if f.kind == FK_CFG_INT else (0, (1 << bits) - 1)
    if not lo <= number <= hi:
        raise ValueError(f"{origin}: {value!r} does not fit fk_loop_config.{name} "
                         f"({bits}-bit {'signed' if f.kind == FK_CFG_INT else 'unsigned'})")
    return number


cdef void cfg_store(char *field, const fk_cfg_field *f, object number) except *:
    cdef uint64_t u
    cdef int64_t i
    cdef unsigned int u32
    cdef int i32
    if f.kind == FK_CFG_INT and f.size == 4:
        i32 = number
        memcpy(field, &i32, 4)
    elif f.kind == FK_CFG_INT and f.size == 8:
        i = number
        memcpy(field, &i, 8)
    elif f.size == 8:
        u = number
        memcpy(field, &u, 8)
    elif f.size == 4:
        u32 = number
        memcpy(field, &u32, 4)
    else:
        raise ValueError(f"fk_loop_config.{f.name.decode('ascii')}: unsupported size {f.size}")


cdef object cfg_load(const char *field, const fk_cfg_field *f):
    cdef uint64_t u = 0
    cdef int64_t i = 0
    cdef unsigned int u32 = 0
    cdef int i32 = 0
    if f.kind == FK_CFG_INT and f.size == 4:
        memcpy(&i32, field, 4)
        return i32
    if f.kind == FK_CFG_INT and f.size == 8:
        memcpy(&i, field, 8)
        return i
    if f.size == 8:
        memcpy(&u, field, 8)
        return u
    memcpy(&u32, field, 4)
    return u32


@cython.final
cdef class LoopConfig:
    """An fk_loop_config and everything its pointers point to: the bytes of its
    text fields and the buffers of its address fields, kept as long as this
    object lives (the Engine keeps it until its loop is destroyed)."""


    def __cinit__(self):
        self.keep = []
        memset(&self.cfg, CFG_UNSET, sizeof(self.cfg))


cdef LoopConfig loop_config(object config, dict engine):
    """The loop's configuration: each field of fk_loop_config from the option of
    config (forker.config.OPTIONS) whose c_field names it, or from engine (field
    name -> value, for what the Engine decides). Raises ValueError naming the
    field when a field is set by nothing or by both, when a c_field names no
    field, or when a value does not fit its field."""
    from .config import OPTIONS
    cdef LoopConfig built = LoopConfig()
    cdef const fk_cfg_field *f
    cdef const fk_cfg_field *length
    cdef char *base = <char *>&built.cfg
    cdef const unsigned char[::1] view
    cdef const char *p
    cdef size_t i
    index = {fk_cfg_fields[i].name.decode("ascii"): i for i in range(FK_CFG_NFIELDS)}
    sources = {}  # field -> (where the value comes from, value)
    for option in OPTIONS:
        field = option.c_field
        if field is None:
            continue
        if field not in index:
            raise ValueError(f"{option.name}: c_field {field!r} is no field of fk_loop_config "
                             "(csrc/fk_loop.h)")
        value = getattr(config, option.name)
        if value is not None or fk_cfg_fields[index[field]].kind == FK_CFG_TEXT:
            sources[field] = (option.name, value)  # None: the Engine decides
    for field, value in engine.items():
        if field not in index:
            raise ValueError(f"the Engine sets {field!r}, no field of fk_loop_config")
        if field in sources:
            raise ValueError(f"fk_loop_config.{field}: set both by option {sources[field][0]} "
                             "and by the Engine")
        sources[field] = ("the Engine's " + field, value)
    for i in range(FK_CFG_NFIELDS):
        f = &fk_cfg_fields[i]
        name = f.name.decode("ascii")
        if f.kind == FK_CFG_LEN:
            continue  # with its text, before it
        if name not in sources:
            raise ValueError(f"fk_loop_config.{name}: no option of forker/config.py has "
                             f"c_field={name!r}, and the Engine does not set it")
        origin, value = sources.pop(name)
        if f.kind == FK_CFG_TEXT:
            length = &fk_cfg_fields[i + 1] if i + 1 < FK_CFG_NFIELDS else NULL
            if length == NULL or length.kind != FK_CFG_LEN:
                raise ValueError(f"fk_loop_config.{name}: a text field must be followed by "
                                 "its length (FK_CFG_LEN)")
            if isinstance(value, str):
                try:
                    value = value.encode("latin-1")
                except UnicodeEncodeError:
                    raise ValueError(f"{origin}: {value!r} is not Latin-1 text") from None
            if value is not None and type(value) is not bytes:
                raise ValueError(f"{origin}: expected text, got {value!r}")
            p = NULL if value is None else PyBytes_AS_STRING(value)
            memcpy(base + f.offset, &p, sizeof(p))
            cfg_store(base + length.offset, length, 0 if value is None else len(value))
            built.keep.append(value)
        elif f.kind == FK_CFG_ADDR:
            p = NULL
            if value is not None:
                view = value
                if view.shape[0] == 0:
                    raise ValueError(f"{origin}: an empty buffer for fk_loop_config.{name}")
                p = <const char *>&view[0]
                built.keep.append(value)
            memcpy(base + f.offset, &p, sizeof(p))
        else:
            if value is None or isinstance(value, (str, bytes)):
                raise ValueError(f"{origin}: expected a number for fk_loop_config.{name}, "
                                 f"got {value!r}")
            cfg_store(base + f.offset, f, cfg_integer(value, f, origin))
    if sources:  # only length fields are left: their text sets them
        raise ValueError(f"fk_loop_config.{next(iter(sources))}: set with its text field, "
                         "not on its own")
    return built


cdef dict loop_config_values(const fk_loop_config *cfg):
    """Every field of cfg by name: integers, bytes (None for NULL) for text,
    and the address (0 for NULL) of address fields."""
    cdef const fk_cfg_field *f
    cdef const char *base = <const char *>cfg
    cdef const char *p
    cdef size_t i, n
    values = {}
    for i in range(FK_CFG_NFIELDS):
        f = &fk_cfg_fields[i]
        name = f.name.decode("ascii")
        if f.kind == FK_CFG_TEXT:
            memcpy(&p, base + f.offset, sizeof(p))
            n = cfg_load(base + fk_cfg_fields[i + 1].offset, &fk_cfg_fields[i + 1])
            values[name] = None if p == NULL else p[:n]
        elif f.kind == FK_CFG_ADDR:
            memcpy(&p, base + f.offset, sizeof(p))
            values[name] = <size_t>p
        else:
            values[name] = cfg_load(base + f.offset, f)
    return values
