"""What crosses between the student's sandbox and the trusted checker: plain data, nothing else.

A verdict must not depend on any code the student wrote, so the trusted checker never receives a
student object. Values are turned into a tree of Python's built-in types before they are pickled,
and the checker unpickles with :class:`PlainUnpickler`, which refuses every class: an object whose
``__eq__`` always answers True, a subclass of ``int`` or of ``torch.Tensor`` cannot come through.

Nodes of the tree (tuples tagged by their first item):

    scalars            None, bool, int, float, str, bytes, as themselves; complex as ("c", re, im)
    ("L"|"Q"|"S", ref, items)  a list, deque or set; ("T", items) a tuple; ("F", items) frozenset
    ("D", ref, pairs)          a dict
    ("t", ref, dtype, shape, stride, offset, storage, raw bytes, requires_grad)   a tensor (on
                            the CPU): a view into a storage, which the receiver keeps by number
                            so that views of one storage stay views of one storage; a
                            course tensor type (a test's guard, ``inferlab.*``) as plain data
    ("g", ref, state)                                   a torch.Generator (its state)
    ("n", dtype, shape, raw bytes)                       a NumPy array
    ("y", dtype) ("z", dims) ("s", start, stop, step)    a torch dtype, torch.Size, slice
    ("O", ref, "module:Class", pairs)   an instance of a course class allowed as data (DATA_CLASSES)
    ("E", "module:Class", name)         an enum member of an allowed class
    ("P", "module:name")                a course function (e.g. a scheduler's default step),
                                        only from the checker: the sandbox's course functions
                                        may be the stubs of redact.py, so they stay handles
    ("H", handle, type name)            an object that stays in the sandbox (a student's class
                                        instance, a generator): the checker gets a proxy
    ("@", index)                        the index-th mutable node again (shared objects, cycles)

``ref`` tells the sandbox's answer which of the checker's objects a node came from: objects sent
into a call come back with their new state and the checker updates its own objects in place, so a
student's function that mutates its arguments (a block table, a scheduler's queues) behaves as it
would in one process.
"""
from __future__ import annotations

import enum
import importlib
import io
import pickle
from collections import deque
from typing import Any, Callable

#: course classes whose instances may cross as data (their state is plain data too)
DATA_CLASSES = frozenset({
    "inferlab.engine.sequence:Sequence",
    "inferlab.engine.sequence:SequenceStatus",
    "inferlab.engine.sampler:SamplingParams",
    "inferlab.engine.block_manager:Block",
    "inferlab.engine.block_manager:BlockManager",
    "inferlab.engine.scheduler:Scheduler",
    "inferlab.engine.tiled_attention:BlockLoads",
})
MAX_MESSAGE = 256 * 2 ** 20
MAX_DEPTH = 200


class WireError(ValueError):
    """A value that cannot cross the sandbox's boundary; the message names it."""


class ReferenceCrossing(WireError):
    """The sandbox sent a new instance of a class that is the lesson's reference implementation
    (built from the stub's class, it would become the real one on the checker's side)."""


def qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve(name: str) -> Any:
    """``module:qualname`` -> the object, for course names only."""
    module, _, attr = name.partition(":")
    if not (module == "inferlab" or module.startswith("inferlab.")):
        raise WireError(f"{name} is not part of the course package")
    target = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def course_function(name: str) -> Any:
    """A function or class defined in the course package under exactly that name (never an
    object a course module merely imports, such as ``os.system``)."""
    target = resolve(name)
    module, _, qualname = name.partition(":")
    if not (callable(target) and getattr(target, "__module__", None) == module
            and getattr(target, "__qualname__", None) == qualname):
        raise WireError(f"{name} is not a function of the course package")
    return target


class PlainUnpickler(pickle.Unpickler):
    """Unpickles built-in containers and scalars only: every class lookup is refused."""

    def find_class(self, module, name):
        raise WireError(f"refused: a message from the sandbox named {module}.{name}")


def dumps(tree) -> bytes:
    return pickle.dumps(tree, protocol=5)


def loads(data: bytes):
    if len(data) > MAX_MESSAGE:
        raise WireError(f"a message of {len(data) / 2**20:.0f} MB is over the limit")
    try:
        return PlainUnpickler(io.BytesIO(data)).load()
    except WireError:
        raise
    except Exception as error:  # noqa: BLE001 - any malformed message is one error
        raise WireError(f"malformed message: {type(error).__name__}") from None


# ------------------------------------------------------------------------------- encoding
class Encoder:
    """Turns values into the tree above.

    ``refs`` maps id(object) -> the reference to write for objects that came from the other side;
    ``fallback(obj)`` is asked for anything that is not data (a handle on the sandbox's side, a
    lesson global or an error on the checker's side).
    """

    def __init__(self, fallback: Callable[[Any], tuple], refs: dict[int, int] | None = None,
                 number_new: bool = False, storages: list | None = None,
                 course_functions: bool = True):
        self.fallback, self.refs, self.number_new = fallback, refs or {}, number_new
        self.course_functions = course_functions
        # storages: where to keep the storages sent (numbered by address, which must then stay
        # unique: the sender keeps them alive); None sends every tensor as a fresh storage
        self.storages = storages
        self.seen: dict[int, int] = {}
        self.sent: list[Any] = []        # objects given a reference number, by number
        self.count = 0
        self._keep: list[Any] = []       # keeps encoded objects alive so ids stay unique

    def ref(self, obj) -> int | None:
        if id(obj) in self.refs:
            return self.refs[id(obj)]
        if self.number_new:
            self.sent.append(obj)
            return len(self.sent) - 1
        return None

    def encode(self, obj, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("a value nested more than 200 levels deep")
        kind = type(obj)
        if obj is None or kind in (bool, int, float, str, bytes):
            return obj
        if kind is complex:
            return ("c", obj.real, obj.imag)
        if id(obj) in self.seen:
            return ("@", self.seen[id(obj)])
        node = self._encode_new(obj, kind, depth + 1)
        return node

    def _mark(self, obj):
        self.seen[id(obj)] = self.count
        self.count += 1
        self._keep.append(obj)

    def _encode_new(self, obj, kind, depth):
        enc = self.encode
        if kind in (list, deque, set):
            self._mark(obj)
            tag = {list: "L", deque: "Q", set: "S"}[kind]
            return (tag, self.ref(obj), [enc(x, depth) for x in obj])
        if kind is dict:
            self._mark(obj)
            return ("D", self.ref(obj), [(enc(k, depth), enc(v, depth)) for k, v in obj.items()])
        if kind is tuple:
            return ("T", [enc(x, depth) for x in obj])
        if kind is frozenset:
            return ("F", [enc(x, depth) for x in obj])
        if kind is slice:
            return ("s", enc(obj.start, depth), enc(obj.stop, depth), enc(obj.step, depth))
        torch = _torch()
        if torch is not None:
            if kind is torch.Tensor or kind is torch.nn.Parameter:
                self._mark(obj)
                return self._tensor(obj, torch)
            if isinstance(obj, torch.Tensor) and kind.__module__.startswith("inferlab."):
                self._mark(obj)            # a course tensor type (a test's guard): its data
                return self._tensor(obj.as_subclass(torch.Tensor), torch)
            if kind is torch.Generator:
                self._mark(obj)
                return ("g", self.ref(obj), _tensor_bytes(obj.get_state()))
            if kind is torch.dtype:
                return ("y", str(obj).split(".")[-1])
            if kind is torch.Size:
                return ("z", list(obj))
        if kind.__module__ == "numpy" and kind.__name__ == "ndarray" and obj.dtype.kind in "biuf":
            return ("n", obj.dtype.str, list(obj.shape), obj.tobytes())
        if kind.__module__ == "numpy" and kind.__name__ in _NUMPY_SCALARS:
            return obj.item()
        name = qualified(kind)
        if name in DATA_CLASSES:
            if isinstance(obj, enum.Enum):
                return ("E", name, obj.name)
            self._mark(obj)
            state = [(attr, enc(value, depth)) for attr, value in _state(obj)]
            return ("O", self.ref(obj), name, state)
        if self.course_functions and callable(obj) and str(
                getattr(obj, "__module__", "")).startswith(
                "inferlab.") and hasattr(obj, "__qualname__") and "<" not in obj.__qualname__:
            return ("P", f"{obj.__module__}:{obj.__qualname__}")
        return self.fallback(obj)


    def _tensor(self, obj, torch):
        t = obj.detach()
        if t.device.type != "cpu" or self.storages is None or t.is_sparse:
            t = t.to("cpu").contiguous()
            key, offset, stride = None, 0, list(t.stride())
            storage = t
        else:
            key, offset = t.untyped_storage().data_ptr(), t.storage_offset()
            stride = list(t.stride())
            self.storages.append(t)
            storage = torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())
        raw = _tensor_bytes(storage) if key is None else storage.numpy().tobytes()
        return ("t", self.ref(obj), str(t.dtype).split(".")[-1], list(t.shape), stride, offset,
                key, raw, bool(obj.requires_grad))


_NUMPY_SCALARS = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8",
                  "bool_"}


def _state(obj):
    if hasattr(obj, "__dict__"):
        yield from vars(obj).items()
    for cls in type(obj).__mro__:
        for attr in getattr(cls, "__slots__", ()):
            if hasattr(obj, attr):
                yield attr, getattr(obj, attr)


def _torch():
    import sys
    return sys.modules.get("torch")


def _tensor_bytes(t) -> bytes:
    torch = _torch()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


# ------------------------------------------------------------------------------- decoding
class Decoder:
    """Builds values from a tree. ``originals[ref]`` are this side's objects that the tree may
    carry back with a new state: they are updated in place and returned, so identity holds.
    ``handle(node)`` makes what the tree cannot carry by value (an object left on the other
    side)."""

    def __init__(self, originals: list | None = None, handle: Callable | None = None,
                 storages: dict | None = None,
                 course_functions: bool = True, refused: frozenset = frozenset()):
        self.originals = originals or []
        self.course_functions = course_functions
        self.refused = refused      # "module:Class" names never built here from new state
        self.storages = {} if storages is None else storages   # the sender's number -> storage
        self.handle = handle
        self.nodes: list[Any] = []
        self.received: dict[int, int] = {}   # id(decoded object) -> the reference it came with

    def _original(self, ref):
        if ref is None or type(ref) is not int:
            return None
        if 0 <= ref < len(self.originals):
            return self.originals[ref]
        return None

    def _remember(self, obj, ref):
        self.nodes.append(obj)
        if type(ref) is int:
            self.received[id(obj)] = ref

    def decode(self, node, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("a value nested more than 200 levels deep")
        kind = type(node)
        if node is None or kind in (bool, int, float, str, bytes):
            return node
        if kind is not tuple or not node or type(node[0]) is not str:
            raise WireError(f"malformed value of type {kind.__name__}")
        tag, dec, d = node[0], self.decode, depth + 1
        try:
            if tag == "c":
                return complex(float(node[1]), float(node[2]))
            if tag == "@":
                return self.nodes[node[1]]
            if tag in ("L", "Q", "S"):
                _, ref, items = node
                container = self._original(ref)
                empty = {"L": list, "Q": deque, "S": set}[tag]
                if type(container) is not empty:
                    container = empty()
                self._remember(container, ref)
                values = [dec(x, d) for x in items]
                container.clear()
                (container.extend if tag != "S" else container.update)(values)
                return container
            if tag == "D":
                _, ref, pairs = node
                container = self._original(ref)
                if type(container) is not dict:
                    container = {}
                self._remember(container, ref)
                values = [(dec(k, d), dec(v, d)) for k, v in pairs]
                container.clear()
                container.update(values)
                return container
            if tag == "T":
                return tuple(dec(x, d) for x in node[1])
            if tag == "F":
                return frozenset(dec(x, d) for x in node[1])
            if tag == "s":
                return slice(dec(node[1], d), dec(node[2], d), dec(node[3], d))
            if tag == "t":
                return self._tensor(node)
            if tag == "g":
                return self._generator(node)
            if tag == "y":
                return _dtype(node[1])
            if tag == "z":
                return _torch_module().Size([int(x) for x in node[1]])
            if tag == "n":
                import numpy as np
                _, dtype, shape, raw = node
                return np.frombuffer(raw, dtype=np.dtype(str(dtype))).reshape(shape).copy()
            if tag == "E":
                cls = self._data_class(node[1])
                return cls[str(node[2])]
            if tag == "O":
                return self._object(node, d)
            if tag == "P" and self.course_functions:
                return course_function(str(node[1]))
            if tag == "H" and self.handle is not None:
                return self.handle(node)
        except WireError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError,
                RuntimeError) as error:
            raise WireError(f"malformed {tag!r} value: {error}") from None
        raise WireError(f"unknown value tag {tag!r}")

    def _data_class(self, name) -> type:
        if name not in DATA_CLASSES:
            raise WireError(f"{name} may not cross the sandbox's boundary")
        return resolve(name)

    def _object(self, node, depth):
        _, ref, name, pairs = node
        cls = self._data_class(name)
        obj = self._original(ref)
        if type(obj) is not cls:
            if name in self.refused:
                raise ReferenceCrossing(f"your code made a {name.split(':')[1]}: that class is "
                                        "the course's own implementation of this exercise")
            obj = object.__new__(cls)
        self._remember(obj, ref)
        state = {}
        for attr, value in pairs:
            if type(attr) is not str or attr.startswith("__"):
                raise WireError(f"bad attribute name in a {name}")
            state[attr] = self.decode(value, depth)
        if hasattr(obj, "__dict__"):
            obj.__dict__.clear()
        for attr, value in state.items():
            object.__setattr__(obj, attr, value)
        return obj

    def _tensor(self, node):
        torch = _torch_module()
        _, ref, dtype_name, shape, stride, offset, key, raw, requires_grad = node
        dtype = _dtype(dtype_name)
        shape, stride = [int(x) for x in shape], [int(x) for x in stride]
        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if len(raw) else \
            torch.empty(0, dtype=torch.uint8)
        storage = self.storages.get(key) if key is not None else None
        if storage is not None and storage.nbytes() == len(raw):
            torch.empty(0, dtype=torch.uint8).set_(storage).copy_(data)
        else:
            storage = data.clone().untyped_storage()
            if key is not None:
                self.storages[key] = storage
        value = torch.empty(0, dtype=dtype).set_(storage, int(offset), shape, stride)
        original = self._original(ref)
        if type(original) is torch.Tensor and original.shape == value.shape \
                and original.dtype == value.dtype:
            with torch.no_grad():
                if not torch.equal(original.to("cpu"), value):
                    original.copy_(value)
            self._remember(original, ref)
            return original
        if requires_grad and value.is_floating_point():
            value.requires_grad_(True)
        self._remember(value, ref)
        return value

    def _generator(self, node):
        torch = _torch_module()
        _, ref, state = node
        generator = self._original(ref)
        if type(generator) is not torch.Generator:
            generator = torch.Generator()
        generator.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8).clone())
        self._remember(generator, ref)
        return generator


def _torch_module():
    import torch
    return torch


def _dtype(name):
    torch = _torch_module()
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise WireError(f"unknown dtype {name!r}")
    return dtype
