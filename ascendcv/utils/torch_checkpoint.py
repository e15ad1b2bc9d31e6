"""Read PyTorch ``.pth`` checkpoints into numpy arrays without importing torch.

``torch.save`` writes one of two containers:

* **zip format** (torch >= 1.6, the default): a zip archive with a single top
  folder whose name varies (``<archive>/``).  ``<archive>/data.pkl`` is the
  pickled object; every tensor storage it references through a persistent id
  ``('storage', storage_type, key, location, numel)`` is the raw record
  ``<archive>/data/<key>``.  ``<archive>/byteorder`` (``little``/``big``) gives
  the byte order of the records (little when absent).
* **legacy format** (torch < 1.6, or ``_use_new_zipfile_serialization=False``):
  pickles of the magic number, the protocol version (1001), a ``sys_info``
  dict and the object, whose persistent ids are ``('storage', storage_type,
  key, location, numel, view_metadata)``; then a pickled list of storage keys
  and, for each key in that order, an 8-byte little-endian element count
  followed by the raw little-endian data.  The
  storage data follows the object pickle, so the object pickle is read twice:
  once to learn each storage's dtype, once to build the tensors.

Tensors become C-contiguous ``numpy.ndarray`` copies (``nn.Parameter`` too;
bfloat16 is widened to float32).  Storage locations such as ``cuda:0`` are
ignored: everything loads on the CPU.  Unpickling goes through a restricted
``find_class``: only a short allow-list of harmless callables is resolved,
system modules (``os``, ``subprocess``, ``builtins.eval`` ...) are refused, and
every other class (``models.re_3dcnn``, ``torch.nn.modules.conv.Conv3d`` ...)
is replaced by an inert :class:`PickledObject` stand-in; nothing is imported.
"""
import codecs
import collections
import io
import os
import pickle
import zipfile

import numpy as np

__all__ = ['CheckpointError', 'PickledObject', 'load_torch_file', 'load_state_dict',
           'module_state_dict', 'get_attr']

_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001
_LEGACY_HEAD = pickle.dumps(_LEGACY_MAGIC, protocol=2)  # how torch.save wrote it
# torch dtype name -> numpy dtype of the raw storage (bfloat16 is read as uint16 bits)
_NP_DTYPES = {'float32': 'f4', 'float64': 'f8', 'float16': 'f2', 'bfloat16': 'u2', 'int64': 'i8',
              'int32': 'i4', 'int16': 'i2', 'int8': 'i1', 'uint8': 'u1', 'bool': '?',
              'complex64': 'c8', 'complex128': 'c16'}
_STORAGE_CLASSES = {'FloatStorage': 'float32', 'DoubleStorage': 'float64', 'HalfStorage': 'float16',
                    'BFloat16Storage': 'bfloat16', 'LongStorage': 'int64', 'IntStorage': 'int32',
                    'ShortStorage': 'int16', 'CharStorage': 'int8', 'ByteStorage': 'uint8',
                    'BoolStorage': 'bool', 'ComplexFloatStorage': 'complex64',
                    'ComplexDoubleStorage': 'complex128', 'UntypedStorage': 'uint8'}
_DTYPE_ALIASES = {'float': 'float32', 'double': 'float64', 'half': 'float16', 'long': 'int64',
                  'int': 'int32', 'short': 'int16', 'cfloat': 'complex64', 'cdouble': 'complex128'}
# never resolved, not even as stand-ins (any other builtin is refused too)
_REFUSED_MODULES = set('os posix nt subprocess sys shutil socket importlib runpy pickle _pickle marshal '
                       'ctypes io pathlib code codeop pty types operator functools inspect multiprocessing '
                       'threading signal tempfile glob webbrowser asyncio pydoc timeit builtins '
                       '__builtin__'.split())
_SAFE_BUILTINS = {t.__name__: t for t in (set, frozenset, slice, complex, bytearray, list, dict, tuple,
                                          object, int, float, bool, str, bytes, range)}


class CheckpointError(ValueError):
    """A file cannot be read as a PyTorch checkpoint (or lacks what was asked for)."""


class PickledObject:
    """Inert stand-in for a class that is not imported (e.g. an ``nn.Module`` subclass).

    ``module``/``name`` name the original class, ``args`` holds the constructor
    arguments, ``state`` the ``__setstate__``/``__dict__`` payload, and
    ``dictitems``/``listitems`` any items pickled for dict or list subclasses.
    """
    module = name = None

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state, obj.dictitems, obj.listitems = args, None, {}, []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.dictitems[key] = value

    def append(self, value):
        self.listitems.append(value)

    def extend(self, values):
        self.listitems.extend(values)

    def __repr__(self):
        return '<PickledObject %s.%s>' % (self.module, self.name)


_stand_ins = {}  # one stand-in class per (module, name)
# a resolved ``torch.<X>Storage`` class or ``torch.<dtype>`` object
_TorchType = collections.namedtuple('_TorchType', 'dtype')


def _stand_in(module, name):
    if (module, name) not in _stand_ins:
        _stand_ins[module, name] = type(name, (PickledObject,), {'module': module, 'name': name})
    return _stand_ins[module, name]


class _Storage:
    """One storage: its torch dtype and a flat array (None until read, legacy pass 1)."""

    def __init__(self, dtype, array=None):
        self.dtype, self.array = dtype, array


def _rebuild_tensor(storage, offset, size, stride, *unused):
    """``torch._utils._rebuild_tensor(_v2)``: a C-contiguous copy of a strided view of a storage."""
    arr = storage.array
    if arr is None:  # legacy first pass: data not read yet
        return None
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
    native = arr.dtype.newbyteorder('=')
    if 0 in size:
        out = np.zeros(size, native)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if offset < 0 or min(stride, default=0) < 0 or last >= arr.size:
            raise ValueError('tensor of size %s lies outside its storage of %d elements'
                             % (size, arr.size))
        view = np.lib.stride_tricks.as_strided(arr[offset:], shape=size, writeable=False,
                                               strides=[s * arr.itemsize for s in stride])
        out = np.array(view, dtype=native, order='C')
    if storage.dtype == 'bfloat16':
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _rebuild_parameter(data, *unused):
    return data


def _rebuild_from_type(func, new_type, args, state):
    return func(*args)


def _reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, PickledObject):
        return cls()
    raise pickle.UnpicklingError('copyreg._reconstructor for %r is not allowed' % (cls,))


_ALLOWED = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch._tensor', '_rebuild_from_type'): _rebuild_from_type,
    ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type,
    ('torch', 'Size'): tuple,
    ('torch.nn.parameter', 'Parameter'): _rebuild_parameter,  # torch 0.4: (Parameter, (data, grad))
    ('copyreg', '_reconstructor'): _reconstructor,
    ('copy_reg', '_reconstructor'): _reconstructor,
    ('_codecs', 'encode'): codecs.encode,  # protocol-2 pickles of bytes
    ('numpy', 'dtype'): np.dtype,
    ('numpy', 'ndarray'): np.ndarray,
}
_np_reconstruct = np.zeros(0).__reduce__()[0]  # numpy(._core).multiarray._reconstruct
_np_scalar = np.float32(0).__reduce__()[0]  # numpy(._core).multiarray.scalar
for _mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    _ALLOWED[(_mod, '_reconstruct')] = _np_reconstruct
    _ALLOWED[(_mod, 'scalar')] = _np_scalar


class _Unpickler(pickle.Unpickler):
    """Restricted unpickler; ``read_record(key, dtype)`` returns a storage's array (or None)."""

    def __init__(self, file, path, storages, read_record):
        super().__init__(file, encoding='utf-8')  # as torch.load (Python 2 str -> str)
        self.path, self.storages, self.read_record = path, storages, read_record

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in ('builtins', '__builtin__') and name in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[name]
        if module in ('torch', 'torch.cuda') or module.startswith('torch.storage'):
            if name in _STORAGE_CLASSES:
                return _TorchType(_STORAGE_CLASSES[name])
            if name in _NP_DTYPES or name in _DTYPE_ALIASES:
                return _TorchType(_DTYPE_ALIASES.get(name, name))
        if name.startswith('_rebuild') or module.split('.')[0] in _REFUSED_MODULES:
            raise CheckpointError('%s: refusing to load global %s.%s (unsupported or unsafe in a '
                                  'checkpoint)' % (self.path, module, name))
        return _stand_in(module, name)

    def persistent_load(self, pid):
        pid = tuple(pid)
        kind = pid[0].decode('ascii') if isinstance(pid[0], bytes) else pid[0]
        if kind == 'module':  # legacy whole-module pickles: ('module', cls, file, source)
            return pid[1]
        if kind != 'storage' or len(pid) < 5 or not isinstance(pid[1], _TorchType):
            raise CheckpointError('%s: unsupported persistent id %r' % (self.path, pid[:3]))
        stype, key, view = pid[1], str(pid[2]), (pid[5] if len(pid) > 5 else None)
        if key not in self.storages:
            self.storages[key] = _Storage(stype.dtype, self.read_record(key, stype.dtype))
        root = self.storages[key]
        if view is None:
            return root
        _, start, length = view  # legacy view into a root storage, in elements
        arr = None if root.array is None else root.array[int(start):int(start) + int(length)]
        return _Storage(root.dtype, arr)


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError('unexpected global %s.%s' % (module, name))


def _corrupt(path, err):
    return CheckpointError('%s: PyTorch checkpoint is truncated or corrupt (%s: %s)'
                           % (path, type(err).__name__, err))


def _load_zip(path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise _corrupt(path, err) from err
    with zf:
        names = [n for n in zf.namelist() if n == 'data.pkl' or n.endswith('/data.pkl')]
        if not names:
            raise CheckpointError('%s: is not a PyTorch checkpoint (zip archive without data.pkl, '
                                  'e.g. an .npz file)' % path)
        prefix = min(names, key=lambda n: n.count('/'))[:-len('data.pkl')]
        try:
            names = set(zf.namelist())
            order = '<'
            if prefix + 'byteorder' in names:
                order = '>' if zf.read(prefix + 'byteorder').strip() == b'big' else '<'

            def read_record(key, dtype):
                raw = zf.read(prefix + 'data/' + key)
                return np.frombuffer(raw, np.dtype(_NP_DTYPES[dtype]).newbyteorder(order))

            return _Unpickler(io.BytesIO(zf.read(prefix + 'data.pkl')), path, {}, read_record).load()
        except CheckpointError:
            raise
        except Exception as err:  # bad CRC, missing record, cut pickle ...
            raise _corrupt(path, err) from err


def _read_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise EOFError('expected %d bytes, got %d' % (n, len(data)))
    return data


def _load_legacy(f, path):
    head = f.read(len(_LEGACY_HEAD))
    if 4 <= len(head) < len(_LEGACY_HEAD) and _LEGACY_HEAD.startswith(head):
        raise _corrupt(path, EOFError('file ends inside the magic number'))
    try:
        f.seek(0)
        magic = _NoGlobals(f).load()
    except Exception:
        magic = None
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise CheckpointError('%s: is not a PyTorch checkpoint (neither a zip archive nor a '
                              'legacy torch pickle)' % path)
    try:
        protocol = _NoGlobals(f).load()
        if protocol != _LEGACY_PROTOCOL:
            raise CheckpointError('%s: unsupported legacy protocol version %r' % (path, protocol))
        _NoGlobals(f).load()  # sys_info; legacy storages are always written little-endian
        start, storages = f.tell(), {}
        _Unpickler(f, path, storages, lambda key, dtype: None).load()  # pass 1: learn dtypes
        for key in _NoGlobals(f).load():
            storage = storages[str(key)]
            count = int.from_bytes(_read_exact(f, 8), 'little')
            dtype = np.dtype(_NP_DTYPES[storage.dtype]).newbyteorder('<')
            storage.array = np.frombuffer(_read_exact(f, count * dtype.itemsize), dtype)
        f.seek(start)
        return _Unpickler(f, path, storages, None).load()  # pass 2: build tensors
    except CheckpointError:
        raise
    except Exception as err:
        raise _corrupt(path, err) from err


def load_torch_file(path):
    """Unpickle a ``torch.save`` file (zip or legacy) with tensors as numpy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError('%s: checkpoint file does not exist' % path)
    with open(path, 'rb') as f:
        head = f.read(4)
        if head in (b'PK\x03\x04', b'PK\x05\x06'):
            return _load_zip(path)
        f.seek(0)
        return _load_legacy(f, path)


def _module_dict(obj):
    state = obj.state if isinstance(obj, PickledObject) else None
    if isinstance(state, tuple) and state and isinstance(state[0], dict):
        state = state[0]
    if not isinstance(state, dict):
        raise CheckpointError('%r is not a pickled nn.Module (no __dict__ state)' % (obj,))
    return state


def module_state_dict(obj):
    """``model.state_dict()`` of a pickled nn.Module stand-in (parameters, persistent buffers)."""
    out = collections.OrderedDict()

    def walk(module, prefix):
        state = _module_dict(module)
        skip = state.get('_non_persistent_buffers_set') or set()
        for name, value in (state.get('_parameters') or {}).items():
            if value is not None:
                out[prefix + name] = value
        for name, value in (state.get('_buffers') or {}).items():
            if value is not None and name not in skip:
                out[prefix + name] = value
        for name, child in (state.get('_modules') or {}).items():
            if child is not None:
                walk(child, prefix + name + '.')
    walk(obj, '')
    return out


def get_attr(obj, name):
    """Attribute ``name`` (dotted for submodules) of a pickled module, as ``getattr`` would see it."""
    for part in name.split('.'):
        state = _module_dict(obj)
        for group in (state, state.get('_parameters'), state.get('_buffers'), state.get('_modules')):
            if isinstance(group, dict) and part in group:
                obj = group[part]
                break
        else:
            raise AttributeError('pickled %s.%s has no attribute %r' % (obj.module, obj.name, part))
    return obj


def load_state_dict(path, key=None):
    """Flat ``OrderedDict[str, ndarray]`` from a checkpoint.

    Accepts a raw state dict, ``{'params_ema': sd}`` (preferred, BasicSR inference
    convention), ``{'params': sd}``, ``{'state_dict': sd}``, ``{'model': sd}`` or
    a whole pickled module.  ``key`` selects a top-level entry explicitly.  A
    ``module.`` prefix shared by every key (DataParallel) is removed.
    """
    obj = load_torch_file(path)
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            available = list(map(str, obj)) if isinstance(obj, dict) else 'none, it holds %s' % (
                obj if isinstance(obj, PickledObject) else type(obj).__name__)
            raise CheckpointError('%s: key %r not found; available top-level keys: %s'
                                  % (path, key, available))
        obj = obj[key]
    elif isinstance(obj, dict) and not all(isinstance(v, np.ndarray) for v in obj.values()):
        for candidate in ('params_ema', 'params', 'state_dict', 'model'):
            if candidate in obj:
                obj = obj[candidate]
                break
    if isinstance(obj, PickledObject):
        try:
            obj = module_state_dict(obj)
        except CheckpointError as err:
            raise CheckpointError('%s: %s' % (path, err)) from err
    sd = collections.OrderedDict((str(k), v) for k, v in obj.items() if isinstance(v, np.ndarray)) \
        if isinstance(obj, dict) else {}
    if not sd:
        hint = ' (keys: %s)' % list(map(str, obj)) if isinstance(obj, dict) else ''
        raise CheckpointError('%s: holds no tensors where a state dict was expected%s' % (path, hint))
    if all(k.startswith('module.') for k in sd):
        sd = collections.OrderedDict((k[len('module.'):], v) for k, v in sd.items())
    return sd
